-- +goose Up
INSERT INTO customers (name, email, currency, metadata, created_at)
SELECT 'Customer Org ' || g,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'billing+' || g || '@customer' || g || '.test' END,
       (ARRAY['USD', 'EUR', 'GBP', 'CAD'])[g % 4 + 1],
       jsonb_build_object('crm_id', 'crm-' || g, 'segment', CASE WHEN g % 3 = 0 THEN 'enterprise' ELSE 'smb' END),
       now() - g * interval '1 day'
FROM generate_series(1, 300) AS g;
