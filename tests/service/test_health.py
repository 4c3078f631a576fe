def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "twin_http_requests_total" in metrics.text


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
