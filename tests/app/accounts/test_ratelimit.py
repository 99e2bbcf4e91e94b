"""Log-in and sign-up throttling: per email and per client IP, on a fake clock (no sleeping)."""

from __future__ import annotations

import pytest

from app.accounts.ratelimit import LoginLimiter, SignupLimiter, SlidingWindow

PASSWORD = "a long enough password"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(client) -> FakeClock:  # type: ignore[no-untyped-def]
    """Swap the app's limiter for one on a fake clock (defaults: 5/email, 20/IP, 15 min)."""
    fake = FakeClock()
    client.http.app.state.login_limiter = LoginLimiter(clock=fake)
    return fake


def log_in(client, email: str = "ana@example.com", password: str = "wrong password"):  # type: ignore[no-untyped-def]
    return client.post("/login", {"email": email, "password": password})


def test_sixth_attempt_is_429_with_retry_after_even_with_the_right_password(
    client, clock: FakeClock
) -> None:
    client.signup("ana@example.com", PASSWORD)
    client.logout()
    for _ in range(5):
        assert log_in(client).status_code == 401
        clock.advance(10)
    locked = log_in(client, password=PASSWORD)
    assert locked.status_code == 429
    # The first failure leaves the 15-minute window 900 - 50 seconds later.
    assert locked.headers["retry-after"] == "850"
    assert "Too many failed log-ins" in locked.text and "15 minutes" in locked.text
    assert client.get("/").status_code == 303  # still logged out


def test_lock_lifts_when_the_window_slides(client, clock: FakeClock) -> None:
    client.signup("ana@example.com", PASSWORD)
    client.logout()
    for _ in range(5):
        log_in(client)
    assert log_in(client, password=PASSWORD).status_code == 429
    clock.advance(15 * 60 - 1)
    assert log_in(client, password=PASSWORD).status_code == 429
    clock.advance(1)
    assert log_in(client, password=PASSWORD).status_code == 303


def test_success_clears_the_email_count(client, clock: FakeClock) -> None:
    client.signup("ana@example.com", PASSWORD)
    client.logout()
    for _ in range(4):
        log_in(client)
    assert log_in(client, password=PASSWORD).status_code == 303
    client.logout()
    for _ in range(4):
        assert log_in(client).status_code == 401
    assert log_in(client, password=PASSWORD).status_code == 303


def test_email_is_matched_case_insensitively(client, clock: FakeClock) -> None:
    for email in ("Ana@Example.com", "ana@example.com ", "ANA@EXAMPLE.COM", "ana@example.com"):
        log_in(client, email=email)
    log_in(client, email="AnA@example.com")
    assert log_in(client, email="ana@example.com").status_code == 429


def test_one_ip_trying_many_accounts_is_throttled(client, clock: FakeClock) -> None:
    limiter = client.http.app.state.login_limiter
    for i in range(19):  # as the route records them; TestClient's address is "testclient"
        limiter.failed(email=f"user{i}@example.com", ip="testclient")
    assert log_in(client, email="user19@example.com").status_code == 401
    response = log_in(client, email="someone-new@example.com")
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) == 900


def test_other_emails_and_ips_are_not_affected(client, clock: FakeClock) -> None:
    client.signup("bob@example.com", PASSWORD)
    client.logout()
    for _ in range(5):
        log_in(client, email="ana@example.com")
    assert log_in(client, email="bob@example.com", password=PASSWORD).status_code == 303
    limiter = client.http.app.state.login_limiter
    assert limiter.check(email="ana@example.com", ip="203.0.113.9") is not None  # email lock
    assert limiter.check(email="carol@example.com", ip="203.0.113.9") is None


def test_invalid_emails_count_too(client, clock: FakeClock) -> None:
    for _ in range(5):
        assert log_in(client, email="not an email").status_code == 401
    assert log_in(client, email="not an email").status_code == 429


def test_sliding_window_counts_only_recent_events() -> None:
    clock = FakeClock()
    window = SlidingWindow(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        assert window.retry_after("k") is None
        window.hit("k")
        clock.advance(10)
    assert window.retry_after("k") == pytest.approx(30)  # first hit at t0 leaves at t0+60
    clock.advance(30)
    assert window.retry_after("k") is None
    window.hit("k")
    assert window.retry_after("k") == pytest.approx(10)
    window.reset("k")
    assert window.retry_after("k") is None


def test_sliding_window_memory_is_bounded() -> None:
    clock = FakeClock()
    window = SlidingWindow(limit=2, window_s=60, clock=clock, max_keys=100)
    for i in range(1000):
        window.hit(f"k{i}")
    assert len(window._events) == 100
    clock.advance(61)
    window.hit("fresh")
    assert window.retry_after("k999") is None  # expired keys are dropped on access
    assert window.retry_after("fresh") is None


def test_limiter_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        SlidingWindow(limit=0, window_s=60)


def test_signups_per_network_are_limited_so_emails_cannot_be_enumerated_in_bulk(
    client, clock: FakeClock
) -> None:
    client.http.app.state.signup_limiter = SignupLimiter(clock=clock, per_ip=3, window_s=3600)
    client.signup("first@example.com", PASSWORD)
    client.logout()
    taken = client.post("/signup", {"email": "first@example.com", "password": PASSWORD})
    assert taken.status_code == 409  # the answer sign-up must give...
    # ...invalid input reveals nothing and is not counted...
    assert (
        client.post("/signup", {"email": "not-an-email", "password": PASSWORD}).status_code == 422
    )
    client.signup("second@example.com", PASSWORD)
    client.logout()
    # ...but the fourth valid attempt within the hour is refused before the lookup.
    refused = client.post("/signup", {"email": "first@example.com", "password": PASSWORD})
    assert refused.status_code == 429
    assert "Too many sign-ups from this network" in refused.text
    assert "exists" not in refused.text
    assert int(refused.headers["retry-after"]) == 3600
    clock.advance(3600)
    assert (
        client.post("/signup", {"email": "third@example.com", "password": PASSWORD}).status_code
        == 303
    )
