"""aiosmtpd handler for the alerting tests: writes each received message to
DIR/<n>.eml (raw bytes, atomically) and its envelope recipients to DIR/<n>.rcpt.
Recipients listed in the environment variable VW_SMTP_REJECT (comma-separated)
are refused with a permanent "550 5.1.1" at RCPT TO.

Run: PYTHONPATH=<this folder> python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c smtp_sink.Sink DIR
"""
import itertools
import os


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count()
        self.reject = {a.strip().lower() for a in os.environ.get("VW_SMTP_REJECT", "").split(",") if a.strip()}
        os.makedirs(directory, exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("smtp_sink.Sink takes exactly one argument: the output folder")
        return cls(args[0])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        with open(os.path.join(self.directory, f"{n}.rcpt"), "w") as f:
            f.write("\n".join(envelope.rcpt_tos))
        tmp = os.path.join(self.directory, f"{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(content)
        os.rename(tmp, os.path.join(self.directory, f"{n}.eml"))
        return f"250 OK queued as vw{n}"
