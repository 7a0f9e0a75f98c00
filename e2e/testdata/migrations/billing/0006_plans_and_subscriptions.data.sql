-- +goose Up
INSERT INTO plans (code, name, amount_cents, currency, billing_interval, trial_days, active)
SELECT 'legacy-' || g,
       'Legacy plan ' || g,
       (g * 250) % 50000,
       (ARRAY['USD', 'EUR', 'GBP'])[g % 3 + 1],
       CASE WHEN g % 4 = 0 THEN 'year'::billing_interval ELSE 'month'::billing_interval END,
       0,
       false
FROM generate_series(1, 120) AS g;

INSERT INTO subscriptions (customer_id, plan_id, status, quantity, current_period_start, current_period_end, canceled_at)
SELECT (g % 300) + 1,
       p.id,
       s.status,
       g % 5 + 1,
       date_trunc('day', now()) - (g % 28) * interval '1 day',
       date_trunc('day', now()) - (g % 28) * interval '1 day' + interval '1 month',
       CASE WHEN s.status = 'canceled' THEN now() - (g % 90) * interval '1 day' END
FROM generate_series(1, 400) AS g
JOIN plans p ON p.id = (g % 126) + 1
CROSS JOIN LATERAL (
    SELECT (ARRAY['trialing', 'active', 'active', 'past_due', 'canceled'])[g % 5 + 1]::subscription_status AS status
) s;
