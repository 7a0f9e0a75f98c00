-- Deploy analytics:refresh_daily_site_stats to pg

refresh materialized view concurrently daily_site_stats;
