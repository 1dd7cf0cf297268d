-- Pages of the chain joined with the stored events, for the read role (adapters/audit_store.py).
-- The view audit_events (schema/0010) is a security barrier, so PostgreSQL plans it apart
-- from the caller's ORDER BY … LIMIT: a page after a position joined every later event
-- of the merchant and sorted them (1.6 s a page of 2,000 at 500,000 events). These
-- functions run as their owner (the reader may not read daybook_events), see only the
-- merchant the transaction names, exactly as the view does, and are planned with their
-- LIMIT. The join repeats the lower bound on the event store's side, so that a merge
-- join starts there instead of at position 1.
CREATE FUNCTION audit_events_after(after_position bigint, page_size integer)
RETURNS TABLE ("position" bigint, stream_id uuid, version bigint, hash bytea, prev_hash bytea, topic text, state bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT c.position, c.stream_id, c.version, c.hash, c.prev_hash, e.topic, e.state
    FROM audit_chain c LEFT JOIN daybook_events e ON e.notification_id = c.position AND e.notification_id > after_position
    WHERE c.merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid
      AND c.position > after_position
    ORDER BY c.position LIMIT least(page_size, 10000)
$$;

CREATE FUNCTION audit_events_of_request(request text, after_position bigint, page_size integer)
RETURNS TABLE ("position" bigint, stream_id uuid, version bigint, hash bytea, prev_hash bytea, topic text, state bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT c.position, c.stream_id, c.version, c.hash, c.prev_hash, e.topic, e.state
    FROM audit_chain c LEFT JOIN daybook_events e ON e.notification_id = c.position AND e.notification_id > after_position
    WHERE c.merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid
      AND c.request_id = request AND c.position > after_position
    ORDER BY c.position LIMIT least(page_size, 10000)
$$;

CREATE FUNCTION audit_events_of_cause(cause text, after_position bigint, page_size integer)
RETURNS TABLE ("position" bigint, stream_id uuid, version bigint, hash bytea, prev_hash bytea, topic text, state bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT c.position, c.stream_id, c.version, c.hash, c.prev_hash, e.topic, e.state
    FROM audit_chain c LEFT JOIN daybook_events e ON e.notification_id = c.position AND e.notification_id > after_position
    WHERE c.merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid
      AND c.causation_id = cause AND c.position > after_position
    ORDER BY c.position LIMIT least(page_size, 10000)
$$;

CREATE FUNCTION audit_events_of_request_and_cause(request text, cause text, after_position bigint, page_size integer)
RETURNS TABLE ("position" bigint, stream_id uuid, version bigint, hash bytea, prev_hash bytea, topic text, state bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT c.position, c.stream_id, c.version, c.hash, c.prev_hash, e.topic, e.state
    FROM audit_chain c LEFT JOIN daybook_events e ON e.notification_id = c.position AND e.notification_id > after_position
    WHERE c.merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid
      AND c.request_id = request AND c.causation_id = cause AND c.position > after_position
    ORDER BY c.position LIMIT least(page_size, 10000)
$$;

CREATE FUNCTION audit_stream_events(stream uuid, after_version bigint, page_size integer)
RETURNS TABLE ("position" bigint, stream_id uuid, version bigint, hash bytea, prev_hash bytea, topic text, state bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT c.position, c.stream_id, c.version, c.hash, c.prev_hash, e.topic, e.state
    FROM audit_chain c LEFT JOIN daybook_events e ON e.notification_id = c.position
    WHERE c.merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid
      AND c.stream_id = stream AND c.version > after_version
    ORDER BY c.version LIMIT least(page_size, 10000)
$$;

REVOKE ALL ON FUNCTION audit_events_after(bigint, integer), audit_events_of_request(text, bigint, integer),
    audit_events_of_cause(text, bigint, integer), audit_events_of_request_and_cause(text, text, bigint, integer),
    audit_stream_events(uuid, bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_events_after(bigint, integer), audit_events_of_request(text, bigint, integer),
    audit_events_of_cause(text, bigint, integer), audit_events_of_request_and_cause(text, text, bigint, integer),
    audit_stream_events(uuid, bigint, integer) TO daybook_reader;
