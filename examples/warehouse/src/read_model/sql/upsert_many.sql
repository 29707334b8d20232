-- Upserts rows given as arrays ($1 SKUs, $2 names, '' for none, $3 quantities, $4 versions),
-- at most one per SKU: each row is written only when its version is newer than the stored one,
-- and its name only when one is given (only a product's creation carries it).
INSERT INTO warehouse_products AS stored (sku, name, quantity, version)
SELECT sku, name, quantity, version
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS change (sku, name, quantity, version)
ON CONFLICT (sku) DO UPDATE
SET name = CASE WHEN excluded.name = '' THEN stored.name ELSE excluded.name END,
    quantity = excluded.quantity,
    version = excluded.version
WHERE excluded.version > stored.version
