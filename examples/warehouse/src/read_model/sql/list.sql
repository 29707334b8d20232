SELECT sku, name, quantity, version FROM warehouse_products ORDER BY sku
