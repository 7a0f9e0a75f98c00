-- +goose Up
CREATE MATERIALIZED VIEW monthly_revenue AS
SELECT date_trunc('month', issued_on)::date AS month,
       currency,
       count(*)                              AS invoices_count,
       sum(total_cents)                      AS total_cents
FROM invoices
WHERE status = 'paid'
GROUP BY 1, 2;

CREATE UNIQUE INDEX monthly_revenue_month_currency_idx ON monthly_revenue (month, currency);
