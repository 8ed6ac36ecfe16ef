#!/usr/bin/env python3
"""A mail server (aiosmtpd) that requires a login and prints every message it accepts as one JSON line
(envelope, login, decoded subject and body).
Usage: smtp.py PORT USER PASSWORD"""
import email
import email.policy
import json
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, user, password = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode()


class Printer:
    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        line = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "login": login,
            "subject": str(msg["subject"]),
            "body": msg.get_body().get_content(),
        }
        print(json.dumps(line), flush=True)
        return "250 OK"


def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user and data.password == password
    return AuthResult(success=ok, handled=False, auth_data=data)


server = Controller(
    Printer(),
    hostname="127.0.0.1",
    port=port,
    authenticator=check,
    auth_required=True,
    auth_require_tls=False,
)
server.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
