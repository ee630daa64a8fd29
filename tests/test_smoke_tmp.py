def test_smoke(client):
    r = client.get("/health"); print(r.json()); assert r.status_code == 200
    r = client.post("/api/embedding", json={"text": ["a cat sits on the mat", "hi"]}); print(r.status_code, r.text[:300])
    assert r.status_code == 200
