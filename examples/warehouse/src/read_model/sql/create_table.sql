CREATE TABLE IF NOT EXISTS warehouse_products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    version BIGINT NOT NULL
)
