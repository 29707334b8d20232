SELECT sku, name, quantity, version FROM warehouse_products WHERE sku = $1
