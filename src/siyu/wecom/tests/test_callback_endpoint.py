"""The callback endpoint: Tencent's sample, fast acknowledgement, rejection of forgeries."""

import pytest

from siyu.testing.factories import TenantFactory
from siyu.wecom.crypto import WeComCrypto, envelope_xml
from siyu.wecom.models import CallbackInbox
from siyu.wecom.processing import processes
from siyu.wecom.testing import tencent_sample

SAMPLE = tencent_sample()


@pytest.fixture
def sample_tenant(db):
    """A tenant configured with the corp id, token and key of Tencent's sample."""
    return TenantFactory(
        slug="sample-corp",
        wecom_corp_id=SAMPLE["corp_id"],
        wecom_callback_token=SAMPLE["token"],
        wecom_callback_aes_key=SAMPLE["encoding_aes_key"],
    )


@pytest.fixture
def crypto():
    return WeComCrypto(SAMPLE["token"], SAMPLE["encoding_aes_key"], SAMPLE["corp_id"])


URL = "/wecom/sample-corp/callback"


def post(client, message, *, signature=None):
    return client.post(
        f"{URL}?msg_signature={signature or message.msg_signature}"
        f"&timestamp={message.timestamp}&nonce={message.nonce}",
        data=envelope_xml(SAMPLE["corp_id"], message, "1000002"),
        content_type="text/xml",
    )


def test_url_verification_replies_the_bare_echostr(client, sample_tenant):
    case = SAMPLE["verify_url"]
    response = client.get(
        URL,
        {k: case[k] for k in ("msg_signature", "timestamp", "nonce", "echostr")},
    )
    assert response.status_code == 200
    assert response.content == case["expected_reply"].encode()  # no quotes, BOM or newline


def test_tencents_sample_message_is_accepted_and_stored(
    client, sample_tenant, django_capture_on_commit_callbacks
):
    case = SAMPLE["decrypt_message"]
    body = (
        f"<xml><ToUserName><![CDATA[{SAMPLE['corp_id']}]]></ToUserName>"
        f"<Encrypt><![CDATA[{case['encrypt']}]]></Encrypt>"
        "<AgentID><![CDATA[1000002]]></AgentID></xml>"
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{URL}?msg_signature={case['msg_signature']}&timestamp={case['timestamp']}"
            f"&nonce={case['nonce']}",
            data=body,
            content_type="text/xml",
        )
    assert response.status_code == 200
    assert response.content == b"success"
    row = CallbackInbox.objects.for_tenant(sample_tenant).get()
    assert row.raw_xml == case["expected_plaintext"]
    assert row.payload["Content"] == "你好"
    assert row.create_time == 1476422779
    assert row.status == CallbackInbox.Status.IGNORED  # a chat message: nothing to apply


def test_a_retried_callback_is_stored_once(
    client, sample_tenant, crypto, django_capture_on_commit_callbacks
):
    xml = "<xml><Event><![CDATA[change_external_contact]]></Event><CreateTime>1</CreateTime></xml>"
    message = crypto.encrypt_message(xml)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):  # WeCom retries with the same message (and new nonces)
            assert post(client, crypto.encrypt_message(xml)).status_code == 200
        assert post(client, message).status_code == 200
    row = CallbackInbox.objects.for_tenant(sample_tenant).get()
    assert row.deliveries == 4


def test_a_changed_tenant_applies_at_once_despite_the_crypto_cache(client, sample_tenant, crypto):
    """The endpoint keeps each tenant's crypto for a few seconds; saving the tenant drops it."""
    from siyu.tenancy.services import system_actor, update_tenant

    assert post(client, crypto.encrypt_message("<xml><Event>a</Event></xml>")).status_code == 200
    actor = system_actor(sample_tenant)
    update_tenant(sample_tenant, wecom_callback_token="AnotherToken1", by=actor)
    assert post(client, crypto.encrypt_message("<xml><Event>b</Event></xml>")).status_code == 401
    rotated = WeComCrypto("AnotherToken1", SAMPLE["encoding_aes_key"], SAMPLE["corp_id"])
    assert post(client, rotated.encrypt_message("<xml><Event>c</Event></xml>")).status_code == 200
    update_tenant(sample_tenant, is_active=False, by=actor)
    assert post(client, rotated.encrypt_message("<xml><Event>d</Event></xml>")).status_code == 404


def test_processing_runs_once_even_when_asked_twice(sample_tenant, crypto):
    from siyu.wecom.callbacks import store_callback
    from siyu.wecom.processing import process

    calls = []

    @processes("test_event", "twice")
    def count(tenant, message):
        calls.append(message["Id"])
        return True

    row = store_callback(
        sample_tenant,
        "<xml><Event>test_event</Event><ChangeType>twice</ChangeType><Id>7</Id></xml>",
    )
    assert process(row.pk) == "processed"
    assert process(row.pk) == "processed"
    assert calls == ["7"]


def test_a_failing_processor_is_marked_failed_and_retried_by_the_sweep(sample_tenant):
    from datetime import timedelta

    from siyu.wecom.callbacks import store_callback
    from siyu.wecom.processing import process, rows_to_retry

    outcomes = iter([RuntimeError("WeCom down"), True])

    @processes("test_event", "flaky")
    def flaky(tenant, message):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    row = store_callback(
        sample_tenant, "<xml><Event>test_event</Event><ChangeType>flaky</ChangeType></xml>"
    )
    assert process(row.pk) == "failed"
    row.refresh_from_db()
    assert row.last_error == "RuntimeError: WeCom down"
    assert rows_to_retry(older_than=timedelta(0)) == [row.pk]
    assert process(row.pk) == "processed"
    assert rows_to_retry(older_than=timedelta(0)) == []


@pytest.mark.parametrize(
    ("tamper", "status"),
    [
        ("signature", 401),
        ("timestamp", 401),
        ("ciphertext", 401),
    ],
)
def test_tampered_callbacks_are_rejected(client, sample_tenant, crypto, tamper, status, caplog):
    message = crypto.encrypt_message("<xml><Event>x</Event></xml>")
    signature = message.msg_signature
    if tamper == "signature":
        signature = "f" * 40
    elif tamper == "timestamp":
        message = type(message)(message.encrypt, signature, "1", message.nonce)
    else:
        message = type(message)(
            message.encrypt[:-8] + "AAAAAAA=", signature, message.timestamp, message.nonce
        )
    response = post(client, message, signature=signature)
    assert response.status_code == status
    assert not CallbackInbox.objects.for_tenant(sample_tenant).exists()
    assert "Rejected WeCom callback" in caplog.text


def test_a_message_encrypted_for_another_corp_is_rejected(client, sample_tenant):
    other = WeComCrypto(SAMPLE["token"], SAMPLE["encoding_aes_key"], "ww-another-corp")
    response = post(client, other.encrypt_message("<xml><Event>x</Event></xml>"))
    assert response.status_code == 400
    assert response.content == b"wrong_receive_id"


def test_bad_ciphertext_with_a_valid_signature_is_a_400(client, sample_tenant, crypto):
    from siyu.wecom.crypto import EncryptedMessage, sign

    garbage = "QUJDREVGR0g="
    message = EncryptedMessage(garbage, sign(crypto.token, "1", "2", garbage), "1", "2")
    assert post(client, message).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not xml",
        "<xml><Encrypt></Encrypt></xml>",
        "<!DOCTYPE x [<!ENTITY a 'b'>]><xml>&a;</xml>",
    ],
)
def test_malformed_bodies_are_a_400(client, sample_tenant, body):
    response = client.post(
        f"{URL}?msg_signature=a&timestamp=1&nonce=2", data=body, content_type="text/xml"
    )
    assert response.status_code == 400


def test_unknown_tenant_missing_params_and_wrong_method(client, sample_tenant):
    assert (
        client.get(
            "/wecom/nobody/callback?msg_signature=a&timestamp=1&nonce=2&echostr=x"
        ).status_code
        == 404
    )
    assert client.get(URL).status_code == 400
    assert client.put(URL).status_code == 405


def test_a_tenant_without_callback_settings_is_a_404(client, db):
    TenantFactory(slug="no-callback")
    response = client.get(
        "/wecom/no-callback/callback?msg_signature=a&timestamp=1&nonce=2&echostr=x"
    )
    assert response.status_code == 404
