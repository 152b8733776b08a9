"""WeCom's message encryption, checked against Tencent's published sample."""

import pytest

from siyu.wecom.crypto import (
    ReceiveIdMismatch,
    SignatureMismatch,
    UndecryptableMessage,
    WeComCrypto,
    sign,
)


def sample():
    from siyu.wecom.testing import tencent_sample

    return tencent_sample()


@pytest.fixture
def crypto():
    data = sample()
    return WeComCrypto(data["token"], data["encoding_aes_key"], data["corp_id"])


def test_tencents_url_verification_sample(crypto):
    case = sample()["verify_url"]
    reply = crypto.verify_url(
        case["msg_signature"], case["timestamp"], case["nonce"], case["echostr"]
    )
    assert reply == case["expected_reply"]


def test_tencents_message_sample(crypto):
    case = sample()["decrypt_message"]
    plain = crypto.decrypt_message(
        case["msg_signature"], case["timestamp"], case["nonce"], case["encrypt"]
    )
    assert plain == case["expected_plaintext"]


def test_encrypt_then_decrypt_round_trips_unicode(crypto):
    message = crypto.encrypt_message("<xml><Content>你好，私域</Content></xml>", nonce="42")
    assert message.msg_signature == sign(crypto.token, message.timestamp, "42", message.encrypt)
    assert (
        crypto.decrypt_message(
            message.msg_signature, message.timestamp, message.nonce, message.encrypt
        )
        == "<xml><Content>你好，私域</Content></xml>"
    )


def test_a_tampered_signature_is_rejected(crypto):
    case = sample()["decrypt_message"]
    with pytest.raises(SignatureMismatch):
        crypto.decrypt_message("0" * 40, case["timestamp"], case["nonce"], case["encrypt"])
    with pytest.raises(SignatureMismatch):  # a replayed body with another timestamp
        crypto.decrypt_message(case["msg_signature"], "1", case["nonce"], case["encrypt"])


@pytest.mark.parametrize("ciphertext", ["not base64!", "QUJD", "A" * 44])
def test_garbage_ciphertext_is_rejected(crypto, ciphertext):
    signature = sign(crypto.token, "1", "2", ciphertext)
    with pytest.raises(UndecryptableMessage):
        crypto.decrypt_message(signature, "1", "2", ciphertext)


def test_a_message_for_another_corp_is_rejected(crypto):
    other = WeComCrypto(crypto.token, sample()["encoding_aes_key"], "ww-someone-else")
    message = other.encrypt_message("<xml/>")
    with pytest.raises(ReceiveIdMismatch):
        crypto.decrypt_message(
            message.msg_signature, message.timestamp, message.nonce, message.encrypt
        )


@pytest.mark.parametrize("key", ["short", "!" * 43])
def test_a_bad_encoding_aes_key_is_refused_up_front(key):
    with pytest.raises(ValueError):
        WeComCrypto("token", key, "corp")
