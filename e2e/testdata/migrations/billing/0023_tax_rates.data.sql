-- +goose Up
INSERT INTO tax_rates (country, region, rate, valid_from, valid_to)
SELECT 'US',
       'district-' || g,
       round(((g % 90) / 1000.0)::numeric, 4),
       date '2022-01-01' + (g % 3) * 365,
       NULL
FROM generate_series(1, 250) AS g;
