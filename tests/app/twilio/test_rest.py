"""TwilioRestClient against the fake Twilio over real HTTP, with the real twilio library."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.dev.fakes.twilio_rest import FakeTwilioState, fake_twilio_app, serve_in_thread
from app.twilio.rest import TwilioRest, TwilioRestClient, TwilioRestError, rebase_url

DIAL = "<Response><Dial>+15550109999</Dial></Response>"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, FakeTwilioState]]:
    app, state = fake_twilio_app()
    with serve_in_thread(app) as base_url:
        yield base_url, state


@pytest.fixture
def fake(served: tuple[str, FakeTwilioState]) -> tuple[str, FakeTwilioState]:
    served[1].reset()
    return served


@pytest.fixture
def client(fake: tuple[str, FakeTwilioState]) -> Iterator[TwilioRestClient]:
    base_url, state = fake
    rest = TwilioRestClient(state.account_sid, state.auth_token, base_url=base_url)
    yield rest
    rest.close()


def test_client_satisfies_protocol(client: TwilioRestClient) -> None:
    rest: TwilioRest = client  # mypy checks the structural match
    assert rest is client


async def test_hangup_completes_the_call(
    client: TwilioRestClient, fake: tuple[str, FakeTwilioState]
) -> None:
    _, state = fake
    call = state.add_call()

    await client.hangup(call.sid)

    assert call.status == "completed"
    [request] = state.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{state.account_sid}/Calls/{call.sid}.json"
    assert request.params == {"Status": "completed"}
    assert request.authorized


async def test_hangup_of_unknown_call_is_success(
    client: TwilioRestClient, fake: tuple[str, FakeTwilioState]
) -> None:
    _, state = fake
    await client.hangup("CA" + "f" * 32)  # 404 / 20404: already gone
    assert [r.status_code for r in state.requests] == [404]


async def test_hangup_twice_is_success(
    client: TwilioRestClient, fake: tuple[str, FakeTwilioState]
) -> None:
    _, state = fake
    call = state.add_call()
    await client.hangup(call.sid)
    await client.hangup(call.sid)  # the fake answers 21220 "not in-progress"
    assert [r.status_code for r in state.requests] == [200, 400]


async def test_redirect_sends_the_twiml(
    client: TwilioRestClient, fake: tuple[str, FakeTwilioState]
) -> None:
    _, state = fake
    call = state.add_call()

    await client.redirect(call.sid, DIAL)

    assert call.twiml == DIAL
    assert call.updates == [{"Twiml": DIAL}]


async def test_redirect_of_unknown_call_is_success(
    client: TwilioRestClient, fake: tuple[str, FakeTwilioState]
) -> None:
    _, state = fake
    await client.redirect("CA" + "e" * 32, DIAL)
    assert [r.status_code for r in state.requests] == [404]


async def test_configure_number_sets_webhooks(
    client: TwilioRestClient, fake: tuple[str, FakeTwilioState]
) -> None:
    _, state = fake
    state.add_number("+15550101234")  # a near-match the client must not pick
    number = state.add_number("+1555010123")

    sid = await client.configure_number(
        "+1555010123",
        "https://bot.example.com/twilio/voice",
        "https://bot.example.com/twilio/status",
    )

    assert sid == number.sid
    assert number.voice_url == "https://bot.example.com/twilio/voice"
    assert number.voice_method == "POST"
    assert number.status_callback == "https://bot.example.com/twilio/status"
    lookup = state.requests_matching("GET", "/IncomingPhoneNumbers.json")
    assert lookup[0].params["PhoneNumber"] == "+1555010123"


async def test_configure_unknown_number_is_a_clear_error(
    client: TwilioRestClient, fake: tuple[str, FakeTwilioState]
) -> None:
    _, state = fake
    with pytest.raises(TwilioRestError, match=r"\+15550107777 is not a phone number on"):
        await client.configure_number("+15550107777", "https://x/v", "https://x/s")
    assert not state.requests_matching("POST", ".json")


async def test_create_call(client: TwilioRestClient, fake: tuple[str, FakeTwilioState]) -> None:
    _, state = fake

    sid = await client.create_call(
        "+15550102222", "+15550103333", "https://bot.example.com/twilio/voice", "https://s"
    )

    call = state.calls[sid]
    assert sid.startswith("CA")
    assert (call.to, call.from_, call.url) == (
        "+15550102222",
        "+15550103333",
        "https://bot.example.com/twilio/voice",
    )
    assert call.status_callback == "https://s"
    [request] = state.requests_matching("POST", "/Calls.json")
    assert request.params["Method"] == "POST"


async def test_create_call_without_status_callback(
    client: TwilioRestClient, fake: tuple[str, FakeTwilioState]
) -> None:
    _, state = fake
    sid = await client.create_call("+15550102222", "+15550103333", "https://b/twilio/voice", None)
    assert "StatusCallback" not in state.requests[-1].params
    assert state.calls[sid].status_callback is None


async def test_bad_credentials_error_is_clear_and_hides_the_token(
    fake: tuple[str, FakeTwilioState],
) -> None:
    base_url, state = fake
    call = state.add_call()
    wrong = "wrong-token-1234567890"
    rest = TwilioRestClient(state.account_sid, wrong, base_url=base_url)

    with pytest.raises(TwilioRestError) as info:
        await rest.hangup(call.sid)

    message = str(info.value)
    assert "TWILIO_AUTH_TOKEN" in message
    assert info.value.status == 401
    assert wrong not in message and wrong not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert call.status == "in-progress"
    assert not state.requests[-1].authorized


async def test_other_errors_raise(
    client: TwilioRestClient, fake: tuple[str, FakeTwilioState]
) -> None:
    with pytest.raises(TwilioRestError, match="HTTP 400, code 21213"):
        await client.create_call("+15550102222", "", "https://b/twilio/voice", None)


async def test_unreachable_api_is_a_clear_error(fake: tuple[str, FakeTwilioState]) -> None:
    _, state = fake
    # Port 9 (discard) on localhost: nothing listens, so the connection is refused.
    rest = TwilioRestClient(state.account_sid, state.auth_token, base_url="http://127.0.0.1:9")
    with pytest.raises(TwilioRestError, match="could not reach the API"):
        await rest.hangup("CA" + "1" * 32)


async def test_slow_api_times_out(fake: tuple[str, FakeTwilioState]) -> None:
    base_url, state = fake
    state.delay = 0.5
    rest = TwilioRestClient(state.account_sid, state.auth_token, base_url=base_url, timeout=0.1)
    with pytest.raises(TwilioRestError, match=r"no answer within 0.1 s"):
        await rest.hangup(state.add_call().sid)


def test_rebase_url_rewrites_only_twilio_hosts() -> None:
    base = "http://127.0.0.1:5000/"
    assert rebase_url("https://api.twilio.com/2010-04-01/x.json?a=1", base) == (
        "http://127.0.0.1:5000/2010-04-01/x.json?a=1"
    )
    assert rebase_url("https://api.dublin.ie1.twilio.com/a", base) == "http://127.0.0.1:5000/a"
    assert rebase_url("https://example.com/x", base) == "https://example.com/x"
    assert rebase_url("https://api.twilio.com/a", None) == "https://api.twilio.com/a"
