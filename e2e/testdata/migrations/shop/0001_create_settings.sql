CREATE TABLE IF NOT EXISTS settings (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO settings (key, value) VALUES ('schema_owner', 'shop-api');
INSERT INTO settings (key, value) VALUES ('default_currency', 'USD');
