"""WeCom's global errcodes the emulator answers with, and errmsg in WeCom's own format.

Codes and meanings follow Tencent's global errcode page (document/path/90313). WeCom's
``errmsg`` is an English phrase followed by a hint, the caller's IP and a help link; the
client must rely on ``errcode`` only, so the phrases here are close, not byte-identical.
"""

from __future__ import annotations

import secrets
import time

SYSTEM_BUSY = -1
OK = 0
INVALID_SECRET = 40001
INVALID_USERID = 40003
INVALID_MEDIA_TYPE = 40004
INVALID_FILE_SIZE = 40006
INVALID_MEDIA_ID = 40007
INVALID_MSGTYPE = 40008
INVALID_CORPID = 40013
INVALID_TOKEN = 40014
CHAT_NOT_FOUND = 40050
INVALID_AGENTID = 40056
INVALID_PARAMETER = 40058
INVALID_TAG = 40068
INVALID_TAG_NAME = 40071
INVALID_JOBID = 40088
INVALID_EXTERNAL_USERID = 40096
NOT_RESIGNED = 40097
TOO_MANY_TAGS = 40126
TRANSFER_TOO_FREQUENT = 40128
TRANSFER_IN_PROGRESS = 40129
TRANSFER_SAME_USER = 40130
NOT_HANDOVER_CUSTOMER = 40131
MISSING_TOKEN = 41001
MISSING_CORPID = 41002
MISSING_SECRET = 41004
MISSING_USERID = 41009
MISSING_AGENTID = 41011
MISSING_EXTERNAL_USERID = 41035
MISSING_CONTACT_WAY_TYPE = 41037
MISSING_CONTACT_WAY_SCENE = 41038
INVALID_CONTACT_WAY_TYPE = 41039
INVALID_CONTACT_WAY_SCENE = 41040
CONTACT_WAY_TOO_MANY_USERS = 41041
MISSING_CONFIG_ID = 41043
INVALID_CONFIG_ID = 41044
CONTACT_WAY_LIMIT = 41045
MISSING_MSGID = 41046
INVALID_MSGID = 41047
NO_RECIPIENT = 41048
MISSING_WELCOME_CODE = 41049
INVALID_WELCOME_CODE = 41050
TOO_MANY_ATTACHMENTS = 41064
INVALID_ATTACHMENT_TYPE = 41065
MOMENT_EMPTY = 41089
JOIN_WAY_TOO_MANY_CHATS = 41091
MASS_MESSAGE_CANCELLED = 41093
TOKEN_EXPIRED = 42001
EMPTY_MEDIA = 44001
EMPTY_CONTENT = 44004
FREQUENCY_LIMIT = 45009
CONCURRENCY_LIMIT = 45033
API_FORBIDDEN = 48002
DEPARTMENT_NOT_FOUND = 60003
USERID_NOT_FOUND = 60111
ALL_RECIPIENTS_INVALID = 81013
NOT_EXTERNAL_CONTACT = 84061

MESSAGES: dict[int, str] = {
    SYSTEM_BUSY: "system is busy",
    OK: "ok",
    INVALID_SECRET: "invalid credential",
    INVALID_USERID: "invalid userid",
    INVALID_MEDIA_TYPE: "invalid media type",
    INVALID_FILE_SIZE: "invalid file size",
    INVALID_MEDIA_ID: "invalid media_id",
    INVALID_MSGTYPE: "invalid message type",
    INVALID_CORPID: "invalid corpid",
    INVALID_TOKEN: "invalid access_token",
    CHAT_NOT_FOUND: "chatid not found",
    INVALID_AGENTID: "invalid agentid",
    INVALID_PARAMETER: "invalid Request Parameter",
    INVALID_TAG: "invalid tagid",
    INVALID_TAG_NAME: "invalid tag name",
    INVALID_JOBID: "invalid jobid",
    INVALID_EXTERNAL_USERID: "invalid external userid",
    NOT_RESIGNED: "user not resigned",
    TOO_MANY_TAGS: "corp tag count exceed limit",
    TRANSFER_TOO_FREQUENT: "customer transfer too frequently",
    TRANSFER_IN_PROGRESS: "customer is in transfer",
    TRANSFER_SAME_USER: "handover userid equals takeover userid",
    NOT_HANDOVER_CUSTOMER: "handover userid is not the follow user",
    MISSING_TOKEN: "access_token missing",
    MISSING_CORPID: "corpid missing",
    MISSING_SECRET: "corpsecret missing",
    MISSING_USERID: "userid missing",
    MISSING_AGENTID: "agentid missing",
    MISSING_EXTERNAL_USERID: "external userid missing",
    MISSING_CONTACT_WAY_TYPE: "contact way type missing",
    MISSING_CONTACT_WAY_SCENE: "contact way scene missing",
    INVALID_CONTACT_WAY_TYPE: "invalid contact way type",
    INVALID_CONTACT_WAY_SCENE: "invalid contact way scene",
    CONTACT_WAY_TOO_MANY_USERS: "contact way user count exceed limit",
    MISSING_CONFIG_ID: "config_id missing",
    INVALID_CONFIG_ID: "invalid config_id",
    CONTACT_WAY_LIMIT: "contact way count exceed limit",
    MISSING_MSGID: "msgid missing",
    INVALID_MSGID: "invalid msgid",
    NO_RECIPIENT: "no valid external userid to send",
    MISSING_WELCOME_CODE: "welcome_code missing",
    INVALID_WELCOME_CODE: "invalid welcome_code",
    TOO_MANY_ATTACHMENTS: "attachments count exceed limit",
    INVALID_ATTACHMENT_TYPE: "invalid attachment type",
    MOMENT_EMPTY: "text and attachments are both empty",
    JOIN_WAY_TOO_MANY_CHATS: "chat_id_list exceed limit",
    MASS_MESSAGE_CANCELLED: "group msg has been cancelled",
    TOKEN_EXPIRED: "access_token expired",
    EMPTY_MEDIA: "empty media data",
    EMPTY_CONTENT: "empty content",
    FREQUENCY_LIMIT: "api freq out of limit",
    CONCURRENCY_LIMIT: "api concurrent out of limit",
    API_FORBIDDEN: "api forbidden",
    DEPARTMENT_NOT_FOUND: "department not found",
    USERID_NOT_FOUND: "userid not found",
    ALL_RECIPIENTS_INVALID: "all touser & toparty & totag invalid",
    NOT_EXTERNAL_CONTACT: "not external contact",
}


class ApiError(Exception):
    """Answer the current API call with ``errcode`` (HTTP 200, as WeCom does)."""

    def __init__(self, errcode: int, detail: str = "") -> None:
        super().__init__(f"{errcode} {detail}".strip())
        self.errcode = errcode
        self.detail = detail


def errmsg(errcode: int, *, detail: str = "", client_ip: str = "127.0.0.1") -> str:
    """WeCom's errmsg: ``phrase, hint: [...], from ip: ..., more info at ...``."""
    if errcode == OK:
        return "ok"
    phrase = MESSAGES.get(errcode, "error")
    if detail:
        phrase = f"{phrase}: {detail}"
    hint = f"{int(time.time())}_{secrets.randbelow(1000)}_{secrets.token_hex(16)}"
    return (
        f"{phrase}, hint: [{hint}], from ip: {client_ip}, "
        f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
    )
