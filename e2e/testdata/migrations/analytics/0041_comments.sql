-- Deploy analytics:comments to pg

comment on table page_views is 'Range partitioned by viewed_on (quarters), 2025 sub-partitioned by device.';
comment on materialized view daily_site_stats is 'Refreshed concurrently every 10 minutes.';
comment on column sites.retention_days is 'Days of raw data kept before partitions are dropped.';
comment on table goal_conversions is 'One row per goal reached by a visitor.';
