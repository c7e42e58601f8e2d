"""SMTP replies as named constants with their enhanced status codes (RFC 5321, RFC 3463)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    enhanced: str
    text: str

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)

    def __str__(self) -> str:
        # RFC 2034: the enhanced code follows the basic code on every line.
        if self.enhanced:
            return f"{self.code} {self.enhanced} {self.text}"
        return f"{self.code} {self.text}"

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 400


OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
QUEUED = Reply(250, "2.0.0", "Message accepted for delivery")
# RFC 5321 §4.5.3.1.10 / RFC 3463: 4.5.3 too many recipients
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
OVER_QUOTA = Reply(452, "4.2.2", "Mailbox full")
TEMP_FAILURE = Reply(451, "4.3.0", "Temporary local problem, try again later")
SHUTTING_DOWN = Reply(421, "4.3.2", "Server shutting down, try again later")
IDLE_TIMEOUT = Reply(421, "4.4.2", "Idle timeout exceeded, closing connection")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections from your address")
NO_SUCH_USER = Reply(550, "5.1.1", "No such user here")
BAD_SENDER_SYNTAX = Reply(553, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(553, "5.1.3", "Bad recipient address syntax")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
DMARC_REJECT = Reply(550, "5.7.1", "Rejected by DMARC policy")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
BARE_NEWLINE = Reply(550, "5.5.2", "Bare <CR> or <LF> in message data is not allowed")
LINE_TOO_LONG = Reply(500, "5.5.6", "Line too long")
SYNTAX_ERROR = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
