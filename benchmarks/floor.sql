-- The floor: the weekly pipeline's aggregates in plain DuckDB SQL, straight off the files.
--
-- What an engine needs at minimum to produce the numbers behind the weekly report, so that
-- `meeting run` can be judged as a ratio to it (benchmarks/bench_engine.py). It reads the
-- six canonical tables where they lie (Parquet), computes, and returns only aggregates.
-- It does not validate rows, write a quarantine, render anything or start a notebook.
--
-- Covers, for the 13 ISO weeks ending with the report week (weeks in the session's
-- timezone, Monday 00:00 to Monday 00:00; a row is placed in the week of its event), per
-- segment as the KPI catalogue's dims say (meetinglib/analysis/kpis.py CATALOGUE):
--   * orders by created_at: orders_created, gmv (cancelled excluded), cancellation_rate,
--     abnormal_rate, stockout_orders;
--   * orders by shipped_at: orders_shipped, on_time_ship_rate (deadline: promised_ship_by,
--     else paid_at + the ship SLA), handling median and P90 hours (paid -> shipped),
--     lost_damaged_rate; fill_rate from order_lines joined to their orders;
--   * orders by delivered_at: cycle_time_p90_h, on_time_delivery_rate, transit median and
--     P90 hours, perfect_order_rate (on time, no exception, no short line, no complaint
--     ticket and no after-sales case before the end of the delivery week);
--   * levels at each week's end: backlog and overdue_backlog (paid, neither shipped nor
--     cancelled; orders created up to lookback_days before the week), pending_amount
--     (delivered, not settled);
--   * tickets: tickets_per_1000 and complaint_rate (per 1,000 orders created), first
--     response and resolution median and P90 hours, csat;
--   * after-sales: return_rate and refund_rate (per order delivered), refund_amount, case
--     cycle median and P90 days, net_revenue;
--   * settlements: settled_amount, settlement lag median and P90 days;
--   * the report week's directly-follows graph over the events table and the after-sales
--     return_requested / return_closed steps: per edge the transitions that end in the
--     week, the cases, and mean, median and P90 hours.
-- Medians and P90s are quantile_cont: linear interpolation between order statistics, as
-- numpy's default and the library. Durations with the end before the start are left out.
-- Segments: order_type, channel, warehouse, carrier, carrier/region of the row's order;
-- rows with an empty segment value (or whose order is not in orders) count under "all"
-- only, as in the library's weekly series. Where one grouped pass serves several KPIs it
-- computes a few segmentations the catalogue does not list; the result keeps the listed
-- ones only (table `catalogue` below). A week without any row of a KPI has no row (the
-- library lists it with 0 or NaN).
--
-- Inputs, set before running this script (benchmarks/floor.py does it):
--   SET TimeZone = 'Asia/Shanghai';                 -- the platform timezone
--   SET VARIABLE report_week = '2026-W47';          -- ISO week of the report
--   SET VARIABLE ship_sla_hours = 48;  SET VARIABLE lookback_days = 90;
--   SET VARIABLE orders_files = ['DIR/orders.parquet'];  (and tickets_files,
--   after_sales_files, settlements_files, order_lines_files, events_files)
-- Output: tables floor_kpis (kpi, dimension, segment, week, value) and floor_edges
-- (source, target, cases, count, mean_h, median_h, p90_h).

-- Results are ordered where it matters; the rest may come in any order (less memory).
SET preserve_insertion_order = false;

CREATE OR REPLACE TEMP VIEW orders AS SELECT * FROM read_parquet(getvariable('orders_files'));
CREATE OR REPLACE TEMP VIEW tickets AS SELECT * FROM read_parquet(getvariable('tickets_files'));
CREATE OR REPLACE TEMP VIEW after_sales AS
    SELECT * FROM read_parquet(getvariable('after_sales_files'));
CREATE OR REPLACE TEMP VIEW settlements AS
    SELECT * FROM read_parquet(getvariable('settlements_files'));
CREATE OR REPLACE TEMP VIEW order_lines AS
    SELECT * FROM read_parquet(getvariable('order_lines_files'));
CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM read_parquet(getvariable('events_files'));

-- The 13 weeks: Monday of the ISO week (the Monday of the week holding 4 January, plus
-- whole weeks), at local midnight.
CREATE OR REPLACE TEMP TABLE weeks AS
WITH report AS (
    SELECT make_date(split_part(getvariable('report_week'), '-W', 1)::INTEGER, 1, 4) AS jan4,
           split_part(getvariable('report_week'), '-W', 2)::INTEGER AS wk
), monday AS (
    SELECT jan4 - (isodow(jan4) - 1)::INTEGER + (wk - 1) * 7 AS report_monday FROM report
)
SELECT i AS w,
       (report_monday - (12 - i) * 7)::TIMESTAMPTZ AS week_start,
       (report_monday - (11 - i) * 7)::TIMESTAMPTZ AS week_end,
       isoyear(report_monday - (12 - i) * 7)::VARCHAR || '-W'
           || lpad(week(report_monday - (12 - i) * 7)::VARCHAR, 2, '0') AS week
FROM monday, (SELECT n::INTEGER AS i FROM range(13) AS r(n));

SET VARIABLE first_start = (SELECT min(week_start) FROM weeks);
SET VARIABLE last_end = (SELECT max(week_end) FROM weeks);
SET VARIABLE report_start = (SELECT max(week_start) FROM weeks);

-- Orders with their segments and the derived instants every KPI group uses.
CREATE OR REPLACE TEMP VIEW o AS
SELECT order_id, order_type, channel, warehouse, carrier, region,
       created_at, paid_at, shipped_at, delivered_at, cancelled_at, promised_delivery_by,
       coalesce(promised_ship_by, paid_at + to_microseconds(
           (getvariable('ship_sla_hours') * 3600e6)::BIGINT)) AS ship_deadline,
       amount, exception_code
FROM orders;

-- Hours between two instants; NULL when the end comes before the start.
CREATE OR REPLACE TEMP MACRO hours_between(a, b) AS
    CASE WHEN b >= a THEN (epoch(b) - epoch(a)) / 3600.0 END;

-- Which segmentations each KPI is reported by (besides "all"), from the catalogue.
CREATE OR REPLACE TEMP TABLE catalogue AS
SELECT * FROM (VALUES
    ('orders_created', 'order_type'), ('orders_created', 'channel'),
    ('orders_created', 'warehouse'),
    ('gmv', 'order_type'), ('gmv', 'channel'),
    ('cancellation_rate', 'order_type'), ('cancellation_rate', 'channel'),
    ('orders_shipped', 'warehouse'), ('orders_shipped', 'carrier'),
    ('on_time_ship_rate', 'order_type'), ('on_time_ship_rate', 'warehouse'),
    ('handling_median_h', 'order_type'), ('handling_median_h', 'warehouse'),
    ('handling_p90_h', 'order_type'), ('handling_p90_h', 'warehouse'),
    ('cycle_time_p90_h', 'order_type'), ('cycle_time_p90_h', 'warehouse'),
    ('backlog', 'order_type'), ('backlog', 'warehouse'),
    ('overdue_backlog', 'order_type'), ('overdue_backlog', 'warehouse'),
    ('abnormal_rate', 'order_type'), ('abnormal_rate', 'warehouse'),
    ('stockout_orders', 'warehouse'),
    ('fill_rate', 'warehouse'),
    ('on_time_delivery_rate', 'order_type'), ('on_time_delivery_rate', 'carrier'),
    ('on_time_delivery_rate', 'carrier/region'),
    ('transit_median_h', 'carrier'), ('transit_median_h', 'carrier/region'),
    ('transit_p90_h', 'carrier'),
    ('lost_damaged_rate', 'carrier'),
    ('perfect_order_rate', 'order_type'),
    ('tickets_per_1000', 'order_type'), ('complaint_rate', 'order_type'),
    ('return_rate', 'order_type'), ('refund_rate', 'order_type'),
    ('refund_amount', 'order_type')
) AS c(kpi, dimension)
UNION ALL
SELECT DISTINCT kpi, 'all' FROM (VALUES
    ('orders_created'), ('gmv'), ('cancellation_rate'), ('orders_shipped'),
    ('on_time_ship_rate'), ('handling_median_h'), ('handling_p90_h'), ('cycle_time_p90_h'),
    ('backlog'), ('overdue_backlog'), ('abnormal_rate'), ('stockout_orders'), ('fill_rate'),
    ('on_time_delivery_rate'), ('transit_median_h'), ('transit_p90_h'),
    ('lost_damaged_rate'), ('perfect_order_rate'), ('tickets_per_1000'), ('complaint_rate'),
    ('first_response_median_h'), ('first_response_p90_h'), ('resolution_median_h'),
    ('resolution_p90_h'), ('csat'), ('return_rate'), ('refund_rate'), ('refund_amount'),
    ('case_cycle_median_d'), ('case_cycle_p90_d'), ('net_revenue'), ('settled_amount'),
    ('settlement_lag_median_d'), ('settlement_lag_p90_d'), ('pending_amount')
) AS a(kpi);

-- --- orders by the week they were created ------------------------------------------------
CREATE OR REPLACE TEMP TABLE by_created AS
WITH x AS (
    SELECT date_trunc('week', created_at) AS week_start, * FROM o
    WHERE created_at >= getvariable('first_start') AND created_at < getvariable('last_end')
)
SELECT week_start,
       CASE WHEN grouping(order_type) = 0 THEN 'order_type'
            WHEN grouping(channel) = 0 THEN 'channel'
            WHEN grouping(warehouse) = 0 THEN 'warehouse' ELSE 'all' END AS dimension,
       CASE WHEN grouping(order_type) = 0 THEN order_type
            WHEN grouping(channel) = 0 THEN channel
            WHEN grouping(warehouse) = 0 THEN warehouse ELSE 'all' END AS segment,
       count(*)::DOUBLE AS orders_created,
       coalesce(sum(amount) FILTER (WHERE cancelled_at IS NULL), 0)::DOUBLE AS gmv,
       avg((cancelled_at IS NOT NULL)::DOUBLE) AS cancellation_rate,
       avg((exception_code IS NOT NULL)::DOUBLE) AS abnormal_rate,
       count(*) FILTER (WHERE exception_code = 'stockout')::DOUBLE AS stockout_orders
FROM x
GROUP BY GROUPING SETS ((week_start), (week_start, order_type), (week_start, channel),
                        (week_start, warehouse));

-- --- orders by the week they shipped -----------------------------------------------------
CREATE OR REPLACE TEMP TABLE by_shipped AS
WITH x AS (
    SELECT date_trunc('week', shipped_at) AS week_start,
           hours_between(paid_at, shipped_at) AS handling_h, * FROM o
    WHERE shipped_at >= getvariable('first_start') AND shipped_at < getvariable('last_end')
), g AS (
    SELECT week_start,
           CASE WHEN grouping(order_type) = 0 THEN 'order_type'
                WHEN grouping(warehouse) = 0 THEN 'warehouse'
                WHEN grouping(carrier) = 0 THEN 'carrier' ELSE 'all' END AS dimension,
           CASE WHEN grouping(order_type) = 0 THEN order_type
                WHEN grouping(warehouse) = 0 THEN warehouse
                WHEN grouping(carrier) = 0 THEN carrier ELSE 'all' END AS segment,
           count(*)::DOUBLE AS orders_shipped,
           avg(CASE WHEN ship_deadline IS NOT NULL
                    THEN (shipped_at <= ship_deadline)::DOUBLE END) AS on_time_ship_rate,
           quantile_cont(handling_h, [0.5, 0.9]) AS handling_q,
           avg(coalesce(exception_code IN ('lost', 'damaged'), FALSE)::DOUBLE)
               AS lost_damaged_rate
    FROM x
    GROUP BY GROUPING SETS ((week_start), (week_start, order_type), (week_start, warehouse),
                            (week_start, carrier))
)
SELECT * EXCLUDE (handling_q), handling_q[1] AS handling_median_h,
       handling_q[2] AS handling_p90_h
FROM g;

-- Fill rate: order lines of the orders shipped in the week, lines without qty_shipped out.
CREATE OR REPLACE TEMP TABLE by_fill AS
WITH x AS (
    SELECT date_trunc('week', o.shipped_at) AS week_start, o.warehouse, l.qty, l.qty_shipped
    FROM order_lines AS l JOIN o USING (order_id)
    WHERE o.shipped_at >= getvariable('first_start') AND o.shipped_at < getvariable('last_end')
      AND l.qty_shipped IS NOT NULL
)
SELECT week_start,
       CASE WHEN grouping(warehouse) = 0 THEN 'warehouse' ELSE 'all' END AS dimension,
       CASE WHEN grouping(warehouse) = 0 THEN warehouse ELSE 'all' END AS segment,
       sum(qty_shipped)::DOUBLE / nullif(sum(qty), 0) AS fill_rate
FROM x
GROUP BY GROUPING SETS ((week_start), (week_start, warehouse));

-- --- orders by the week they were delivered ----------------------------------------------
CREATE OR REPLACE TEMP TABLE by_delivered AS
WITH first_complaint AS (
    SELECT order_id, min(opened_at) AS at FROM tickets
    WHERE category = 'complaint' AND order_id IS NOT NULL GROUP BY order_id
), first_case AS (
    SELECT order_id, min(requested_at) AS at FROM after_sales GROUP BY order_id
), short_orders AS (
    SELECT DISTINCT order_id FROM order_lines WHERE qty_shipped < qty
), x AS (
    SELECT date_trunc('week', o.delivered_at) AS week_start,
           o.order_type, o.warehouse, o.carrier, o.region,
           hours_between(o.created_at, o.delivered_at) AS cycle_h,
           hours_between(o.shipped_at, o.delivered_at) AS transit_h,
           CASE WHEN o.promised_delivery_by IS NOT NULL
                THEN (o.delivered_at <= o.promised_delivery_by)::DOUBLE END AS on_time,
           CASE WHEN o.promised_delivery_by IS NOT NULL THEN (
                o.delivered_at <= o.promised_delivery_by AND o.exception_code IS NULL
                AND s.order_id IS NULL
                -- complaints and cases count up to the end of the delivery week
                AND NOT coalesce(c.at < date_trunc('week', o.delivered_at) + INTERVAL 7 DAY,
                                 FALSE)
                AND NOT coalesce(a.at < date_trunc('week', o.delivered_at) + INTERVAL 7 DAY,
                                 FALSE))::DOUBLE END AS perfect
    FROM o
    LEFT JOIN first_complaint AS c USING (order_id)
    LEFT JOIN first_case AS a USING (order_id)
    LEFT JOIN short_orders AS s USING (order_id)
    WHERE o.delivered_at >= getvariable('first_start')
      AND o.delivered_at < getvariable('last_end')
), g AS (
    SELECT week_start,
           CASE WHEN grouping(order_type) = 0 THEN 'order_type'
                WHEN grouping(warehouse) = 0 THEN 'warehouse'
                WHEN grouping(region) = 0 THEN 'carrier/region'
                WHEN grouping(carrier) = 0 THEN 'carrier' ELSE 'all' END AS dimension,
           CASE WHEN grouping(order_type) = 0 THEN order_type
                WHEN grouping(warehouse) = 0 THEN warehouse
                WHEN grouping(region) = 0 THEN carrier || '/' || region
                WHEN grouping(carrier) = 0 THEN carrier ELSE 'all' END AS segment,
           count(*)::DOUBLE AS orders_delivered,
           quantile_cont(cycle_h, 0.9) AS cycle_time_p90_h,
           avg(on_time) AS on_time_delivery_rate,
           quantile_cont(transit_h, [0.5, 0.9]) AS transit_q,
           avg(perfect) AS perfect_order_rate
    FROM x
    GROUP BY GROUPING SETS ((week_start), (week_start, order_type), (week_start, warehouse),
                            (week_start, carrier), (week_start, carrier, region))
)
SELECT * EXCLUDE (transit_q), transit_q[1] AS transit_median_h, transit_q[2] AS transit_p90_h
FROM g;

-- --- levels at each week's end -----------------------------------------------------------
-- An order is in the backlog at a week's end e when paid before e and neither shipped
-- nor cancelled before e; overdue when also its ship deadline passed before e.
CREATE OR REPLACE TEMP TABLE by_level AS
WITH x AS (
    SELECT order_type, warehouse, created_at, paid_at,
           coalesce(least(shipped_at, cancelled_at), 'infinity'::TIMESTAMPTZ) AS closed_at,
           CASE WHEN paid_at IS NOT NULL AND ship_deadline IS NOT NULL
                THEN greatest(ship_deadline, paid_at) END AS due_at
    FROM o
    WHERE paid_at < getvariable('last_end')
), at_end AS (
    SELECT w.week_start, x.order_type, x.warehouse, (x.due_at < w.week_end) AS overdue
    FROM x JOIN weeks AS w
      ON x.paid_at < w.week_end AND x.closed_at >= w.week_end
    -- each week's end counts orders created up to lookback_days before that week
    WHERE x.created_at >= w.week_start - to_days(getvariable('lookback_days')::INTEGER)
)
SELECT week_start,
       CASE WHEN grouping(order_type) = 0 THEN 'order_type'
            WHEN grouping(warehouse) = 0 THEN 'warehouse' ELSE 'all' END AS dimension,
       CASE WHEN grouping(order_type) = 0 THEN order_type
            WHEN grouping(warehouse) = 0 THEN warehouse ELSE 'all' END AS segment,
       count(*)::DOUBLE AS backlog,
       count(*) FILTER (WHERE overdue)::DOUBLE AS overdue_backlog
FROM at_end
GROUP BY GROUPING SETS ((week_start), (week_start, order_type), (week_start, warehouse));

-- Pending settlements at a week's end: the order delivered before it, not settled before it.
CREATE OR REPLACE TEMP TABLE by_pending AS
WITH x AS (
    SELECT o.delivered_at, coalesce(s.settled_at, 'infinity'::TIMESTAMPTZ) AS settled_at,
           s.amount
    FROM settlements AS s JOIN o USING (order_id)
    WHERE o.delivered_at < getvariable('last_end')
)
SELECT w.week_start, 'all' AS dimension, 'all' AS segment,
       sum(x.amount)::DOUBLE AS pending_amount
FROM x JOIN weeks AS w ON x.delivered_at < w.week_end AND x.settled_at >= w.week_end
GROUP BY w.week_start;

-- --- tickets -------------------------------------------------------------------------------
CREATE OR REPLACE TEMP TABLE by_opened AS
WITH x AS (
    SELECT date_trunc('week', t.opened_at) AS week_start, t.category, o.order_type
    FROM tickets AS t LEFT JOIN o USING (order_id)
    WHERE t.opened_at >= getvariable('first_start') AND t.opened_at < getvariable('last_end')
)
SELECT week_start,
       CASE WHEN grouping(order_type) = 0 THEN 'order_type' ELSE 'all' END AS dimension,
       CASE WHEN grouping(order_type) = 0 THEN order_type ELSE 'all' END AS segment,
       count(*)::DOUBLE AS tickets,
       count(*) FILTER (WHERE category = 'complaint')::DOUBLE AS complaints
FROM x
GROUP BY GROUPING SETS ((week_start), (week_start, order_type));

CREATE OR REPLACE TEMP TABLE by_ticket_end AS
WITH responded AS (
    SELECT date_trunc('week', first_response_at) AS week_start,
           quantile_cont(hours_between(opened_at, first_response_at), [0.5, 0.9]) AS q
    FROM tickets
    WHERE first_response_at >= getvariable('first_start')
      AND first_response_at < getvariable('last_end')
    GROUP BY 1
), resolved AS (
    SELECT date_trunc('week', resolved_at) AS week_start,
           quantile_cont(hours_between(opened_at, resolved_at), [0.5, 0.9]) AS q,
           avg(csat) AS csat
    FROM tickets
    WHERE resolved_at >= getvariable('first_start') AND resolved_at < getvariable('last_end')
    GROUP BY 1
)
SELECT w.week_start, 'all' AS dimension, 'all' AS segment,
       responded.q[1] AS first_response_median_h, responded.q[2] AS first_response_p90_h,
       resolved.q[1] AS resolution_median_h, resolved.q[2] AS resolution_p90_h, resolved.csat
FROM weeks AS w
LEFT JOIN responded USING (week_start)
LEFT JOIN resolved USING (week_start);

-- --- after-sales ---------------------------------------------------------------------------
CREATE OR REPLACE TEMP TABLE by_requested AS
WITH x AS (
    SELECT date_trunc('week', a.requested_at) AS week_start, a.kind,
           coalesce(a.refund_amount, 0) AS refund_amount, o.order_type
    FROM after_sales AS a LEFT JOIN o USING (order_id)
    WHERE a.requested_at >= getvariable('first_start')
      AND a.requested_at < getvariable('last_end')
)
SELECT week_start,
       CASE WHEN grouping(order_type) = 0 THEN 'order_type' ELSE 'all' END AS dimension,
       CASE WHEN grouping(order_type) = 0 THEN order_type ELSE 'all' END AS segment,
       count(*) FILTER (WHERE kind = 'return')::DOUBLE AS returns,
       count(*) FILTER (WHERE refund_amount > 0)::DOUBLE AS refunds,
       sum(refund_amount)::DOUBLE AS refund_amount
FROM x
GROUP BY GROUPING SETS ((week_start), (week_start, order_type));

CREATE OR REPLACE TEMP TABLE by_closed AS
SELECT date_trunc('week', closed_at) AS week_start, 'all' AS dimension, 'all' AS segment,
       quantile_cont(hours_between(requested_at, closed_at) / 24.0, 0.5) AS case_cycle_median_d,
       quantile_cont(hours_between(requested_at, closed_at) / 24.0, 0.9) AS case_cycle_p90_d
FROM after_sales
WHERE closed_at >= getvariable('first_start') AND closed_at < getvariable('last_end')
GROUP BY 1;

-- --- settlements ---------------------------------------------------------------------------
CREATE OR REPLACE TEMP TABLE by_settled AS
WITH x AS (
    SELECT date_trunc('week', s.settled_at) AS week_start, s.amount,
           hours_between(o.delivered_at, s.settled_at) / 24.0 AS lag_d
    FROM settlements AS s LEFT JOIN o USING (order_id)
    WHERE s.status = 'settled'
      AND s.settled_at >= getvariable('first_start') AND s.settled_at < getvariable('last_end')
), g AS (
    SELECT week_start, sum(amount)::DOUBLE AS settled_amount,
           quantile_cont(lag_d, [0.5, 0.9]) AS q
    FROM x GROUP BY week_start
)
SELECT week_start, 'all' AS dimension, 'all' AS segment, settled_amount,
       q[1] AS settlement_lag_median_d, q[2] AS settlement_lag_p90_d
FROM g;

-- --- the KPIs, long: one row per KPI, segment and week -------------------------------------
CREATE OR REPLACE TEMP TABLE floor_long AS
UNPIVOT by_created ON COLUMNS(* EXCLUDE (week_start, dimension, segment))
    INTO NAME kpi VALUE value
UNION ALL BY NAME
UNPIVOT by_shipped ON COLUMNS(* EXCLUDE (week_start, dimension, segment))
    INTO NAME kpi VALUE value
UNION ALL BY NAME
UNPIVOT by_fill ON fill_rate INTO NAME kpi VALUE value
UNION ALL BY NAME
UNPIVOT by_delivered ON COLUMNS(* EXCLUDE (week_start, dimension, segment))
    INTO NAME kpi VALUE value
UNION ALL BY NAME
UNPIVOT by_level ON backlog, overdue_backlog INTO NAME kpi VALUE value
UNION ALL BY NAME
UNPIVOT by_pending ON pending_amount INTO NAME kpi VALUE value
UNION ALL BY NAME
UNPIVOT by_ticket_end ON COLUMNS(* EXCLUDE (week_start, dimension, segment))
    INTO NAME kpi VALUE value
UNION ALL BY NAME
UNPIVOT by_requested ON refund_amount INTO NAME kpi VALUE value
UNION ALL BY NAME
UNPIVOT by_closed ON case_cycle_median_d, case_cycle_p90_d INTO NAME kpi VALUE value
UNION ALL BY NAME
UNPIVOT by_settled ON COLUMNS(* EXCLUDE (week_start, dimension, segment))
    INTO NAME kpi VALUE value
-- ratios of two tables: per 1,000 orders created, per order delivered
UNION ALL BY NAME
SELECT t.week_start, t.dimension, t.segment, 'tickets_per_1000' AS kpi,
       1000 * t.tickets / nullif(c.orders_created, 0) AS value
FROM by_opened AS t JOIN by_created AS c USING (week_start, dimension, segment)
UNION ALL BY NAME
SELECT t.week_start, t.dimension, t.segment, 'complaint_rate' AS kpi,
       1000 * t.complaints / nullif(c.orders_created, 0) AS value
FROM by_opened AS t JOIN by_created AS c USING (week_start, dimension, segment)
UNION ALL BY NAME
SELECT r.week_start, r.dimension, r.segment, 'return_rate' AS kpi,
       r.returns / nullif(d.orders_delivered, 0) AS value
FROM by_requested AS r JOIN by_delivered AS d USING (week_start, dimension, segment)
UNION ALL BY NAME
SELECT r.week_start, r.dimension, r.segment, 'refund_rate' AS kpi,
       r.refunds / nullif(d.orders_delivered, 0) AS value
FROM by_requested AS r JOIN by_delivered AS d USING (week_start, dimension, segment)
UNION ALL BY NAME
SELECT c.week_start, 'all' AS dimension, 'all' AS segment, 'net_revenue' AS kpi,
       c.gmv - coalesce(r.refund_amount, 0) AS value
FROM by_created AS c
LEFT JOIN by_requested AS r USING (week_start, dimension, segment)
WHERE c.dimension = 'all';

CREATE OR REPLACE TEMP TABLE floor_kpis AS
SELECT l.kpi, l.dimension, l.segment, w.week, l.value
FROM floor_long AS l
JOIN catalogue USING (kpi, dimension)
JOIN weeks AS w USING (week_start)
WHERE l.segment IS NOT NULL  -- an empty segment value, or no such order in orders
ORDER BY l.kpi, l.dimension, l.segment, w.week;

-- --- the report week's directly-follows graph ----------------------------------------------
-- The log: the events table plus each after-sales case's request and close, per order by
-- time, ties in business order; a transition belongs to the week its target event is in.
CREATE OR REPLACE TEMP TABLE floor_edges AS
WITH in_week AS (  -- the orders with an event in the week (read apart from the log: a CTE
                   -- read twice would be materialised, every event of every week)
    SELECT order_id FROM events
    WHERE "timestamp" >= getvariable('report_start') AND "timestamp" < getvariable('last_end')
    UNION
    SELECT order_id FROM after_sales
    WHERE (requested_at >= getvariable('report_start') AND requested_at < getvariable('last_end'))
       OR (closed_at >= getvariable('report_start') AND closed_at < getvariable('last_end'))
), log AS (
    SELECT order_id, activity, "timestamp" AS ts FROM events
    WHERE "timestamp" < getvariable('last_end')
    UNION ALL
    SELECT order_id, 'return_requested', requested_at FROM after_sales
    WHERE requested_at < getvariable('last_end')
    UNION ALL
    SELECT order_id, 'return_closed', closed_at FROM after_sales
    WHERE closed_at < getvariable('last_end')
), steps AS (
    SELECT order_id, activity AS target, ts, lag(activity) OVER w AS source,
           (epoch(ts) - epoch(lag(ts) OVER w)) / 3600.0 AS hours
    FROM log SEMI JOIN in_week USING (order_id)
    WINDOW w AS (PARTITION BY order_id ORDER BY ts,
        list_position(['created', 'paid', 'picked', 'packed', 'shipped', 'delivered',
                       'cancelled', 'return_requested', 'return_closed'], activity)
            NULLS LAST, activity)
)
SELECT source, target, count(DISTINCT order_id) AS cases, count(*) AS count,
       avg(hours) AS mean_h, quantile_cont(hours, 0.5) AS median_h,
       quantile_cont(hours, 0.9) AS p90_h
FROM steps
WHERE source IS NOT NULL AND ts >= getvariable('report_start')
GROUP BY source, target
ORDER BY count DESC, source, target;
