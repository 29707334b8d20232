INSERT INTO warehouse_products (sku, name, quantity, version)
VALUES ($1, COALESCE($2, ''), $3, $4)
ON CONFLICT (sku) DO UPDATE
SET name = COALESCE($2, warehouse_products.name),
    quantity = excluded.quantity,
    version = excluded.version
WHERE excluded.version > warehouse_products.version
