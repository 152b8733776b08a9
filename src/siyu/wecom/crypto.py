"""WeCom's callback message encryption (企业微信 "加解密方案"), both directions.

Used by the callback endpoint (verify, decrypt) and by the emulator (encrypt, sign), so
both sides of the protocol share one implementation that is checked against Tencent's own
published sample (``shared/testdata/wecom_callback_sample.json``).

The scheme, as Tencent documents it:
- ``msg_signature`` = SHA-1 hex of the sorted concatenation of token, timestamp, nonce and
  the ciphertext (``echostr`` for URL verification, ``Encrypt`` for messages);
- AES-256-CBC with key = base64-decode(EncodingAESKey + "="), IV = the key's first 16 bytes,
  PKCS#7 padding to a 32-byte block;
- plaintext = 16 random bytes + 4-byte big-endian message length + message + receive id
  (the corp id), which the receiver must check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_KEY_LENGTH = 43
BLOCK_BITS = 256  # WeCom pads to 32 bytes, not AES's 16


class CallbackCryptoError(ValueError):
    """A callback that must be rejected; ``reason`` is a short machine-readable code."""

    reason = "invalid"


class SignatureMismatch(CallbackCryptoError):
    reason = "bad_signature"


class UndecryptableMessage(CallbackCryptoError):
    reason = "bad_ciphertext"


class ReceiveIdMismatch(CallbackCryptoError):
    reason = "wrong_receive_id"


def sign(token: str, timestamp: str, nonce: str, ciphertext: str) -> str:
    """The ``msg_signature`` of a callback."""
    joined = "".join(sorted([token, str(timestamp), str(nonce), ciphertext]))
    return hashlib.sha1(joined.encode()).hexdigest()


@dataclass(frozen=True)
class EncryptedMessage:
    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str


class WeComCrypto:
    """One corp's (or one app's) callback crypto: token, EncodingAESKey, receive id."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != AES_KEY_LENGTH:
            raise ValueError("EncodingAESKey must be 43 characters")
        try:
            self._key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error as error:
            raise ValueError("EncodingAESKey must be base64") from error
        self.token = token
        self.receive_id = receive_id

    # --- receiving --------------------------------------------------------------------------
    def verify_signature(self, msg_signature: str, timestamp: str, nonce: str, data: str) -> None:
        expected = sign(self.token, timestamp, nonce, data)
        if not hmac.compare_digest(expected, (msg_signature or "").lower()):
            raise SignatureMismatch("msg_signature does not match")

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Answer WeCom's URL verification: the decrypted echostr, to be replied bare."""
        self.verify_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt_ciphertext(echostr)

    def decrypt_message(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        """Check the signature and return the plaintext XML of a delivered callback."""
        self.verify_signature(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt_ciphertext(encrypt)

    def decrypt_ciphertext(self, ciphertext: str) -> str:
        try:
            raw = base64.b64decode(ciphertext, validate=True)
            decryptor = self._cipher().decryptor()
            padded = decryptor.update(raw) + decryptor.finalize()
            unpadder = padding.PKCS7(BLOCK_BITS).unpadder()
            plain = unpadder.update(padded) + unpadder.finalize()
            (length,) = struct.unpack(">I", plain[16:20])
            message = plain[20 : 20 + length]
            receive_id = plain[20 + length :].decode()
            if len(message) != length:
                raise ValueError("truncated message")
            text = message.decode()
        except (binascii.Error, ValueError, struct.error, UnicodeDecodeError) as error:
            raise UndecryptableMessage(f"cannot decrypt: {error}") from error
        if not hmac.compare_digest(receive_id.encode(), self.receive_id.encode()):
            raise ReceiveIdMismatch("the message is for another corp or app")
        return text

    # --- sending (the emulator; replies to WeCom) -------------------------------------------
    def encrypt_ciphertext(self, message: str, *, random_prefix: bytes | None = None) -> str:
        body = message.encode()
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        plain = prefix + struct.pack(">I", len(body)) + body + self.receive_id.encode()
        padder = padding.PKCS7(BLOCK_BITS).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()

    def encrypt_message(
        self, message: str, *, timestamp: str | None = None, nonce: str | None = None
    ) -> EncryptedMessage:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(int.from_bytes(os.urandom(4), "big"))
        encrypt = self.encrypt_ciphertext(message)
        return EncryptedMessage(
            encrypt, sign(self.token, timestamp, nonce, encrypt), timestamp, nonce
        )

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))


def envelope_xml(to_user: str, message: EncryptedMessage, agent_id: str = "") -> str:
    """The POST body WeCom sends to a callback URL."""
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        f"<Encrypt><![CDATA[{message.encrypt}]]></Encrypt>"
        f"<AgentID><![CDATA[{agent_id}]]></AgentID></xml>"
    )
