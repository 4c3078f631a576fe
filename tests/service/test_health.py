def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "twin_http_requests_total" in metrics.text


def test_metrics_say_what_a_broker_dropped(client, sample_engine):
    # What the MQTT watchers recorded (tests/ingest/test_watch.py has them read a real broker).
    from geo import store

    with sample_engine.begin() as conn:
        assert store.record_feed_drops(conn, "feeds.example:1883", total=1200, run_id=None) == 0
        assert store.record_feed_drops(conn, "feeds.example:1883", total=1450, run_id=None) == 250
        # The second watcher of a group reads the same counter: counted once, not twice.
        assert store.record_feed_drops(conn, "feeds.example:1883", total=1450,
                                       run_id=None) is None
    text = client.get("/metrics").text
    assert 'twin_feed_dropped_messages{broker="feeds.example:1883"} 250.0' in text


def test_unknown_path_is_problem_json(client):
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_ready_is_503_with_retry_after_when_the_database_is_away(sample_engine):
    from fastapi.testclient import TestClient
    from sqlalchemy.engine import make_url

    from geo.database import create_engine
    from service.app import create_app

    # A real engine pointing at a port where nothing listens stands in for a database gone.
    gone = create_engine(make_url("postgresql+psycopg://twin@127.0.0.1:1/twin"))
    with TestClient(create_app(gone), raise_server_exceptions=False) as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "application/problem+json"
