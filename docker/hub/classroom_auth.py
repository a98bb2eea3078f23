"""Who gets into the classroom: NativeAuthenticator (sign up, then the teacher approves),
hardened for a room with a careless or hostile learner in it.

- Usernames and passwords follow autograd_hub's rules, and sign-up says which one failed.
- Admins' names (HUB_ADMINS) are reserved: nobody gets one by signing up, in any case; the
  teacher gives an admin its password with ``invoke hub-admin NAME`` (``main`` below).
- Approving, revoking and discarding are POST forms carrying the XSRF token: a link in a
  mail or a page cannot do them (NativeAuthenticator's are plain GET links).
- After HUB_LOGIN_ATTEMPTS wrong passwords a name is locked for HUB_LOCKOUT_SECONDS.
- bcrypt (~0.3 s a check) runs in two worker threads, never in the hub's event loop: logins,
  right or wrong, never stall anyone else's requests; names and addresses with recent failed
  logins wait behind the others (autograd_hub.Turns), so guessing does not slow learners down.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
import time
from datetime import datetime
from pathlib import Path

import autograd_hub as hub
import bcrypt
import nativeauthenticator
from jupyterhub.scopes import needs_scope
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LocalBase
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from tornado import web

admin_only = needs_scope("admin:users")
TURNS = hub.Turns(workers=2)


async def password_matches(password: str, hashed: bytes, rank: int = 0) -> bool:
    return await TURNS.run(rank, bcrypt.checkpw, password.encode(), hashed)


async def password_hash(password: str) -> bytes:
    return await TURNS.run(0, lambda: bcrypt.hashpw(password.encode(), bcrypt.gensalt()))


@functools.cache
def common_passwords() -> frozenset[str]:
    """NativeAuthenticator's list of the most common passwords."""
    path = Path(nativeauthenticator.__file__).with_name("common-credentials.txt")
    return frozenset(path.read_text().splitlines())


def find(db, username: str) -> UserInfo | None:
    """The user's record as the database has it now (``invoke hub-admin`` writes to it from
    another process, so a cached copy may be stale)."""
    return db.query(UserInfo).filter(UserInfo.username == username).populate_existing().first()


class ClassroomAuthenticator(NativeAuthenticator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.failed_from = {}

    def username_problem(self, raw: str) -> str | None:
        return hub.username_problem(raw, reserved=self.admin_users)

    def password_problem(self, username: str, password: str) -> str | None:
        return hub.password_problem(username, password, common_passwords())

    def lockout_message(self, username: str) -> str:
        since = datetime.now() - self.login_attempts[username]["time"]
        minutes = max(1, round((self.seconds_before_next_try - since.total_seconds()) / 60))
        return (
            f"Too many wrong passwords for {username}: try again in about {minutes} min, "
            "or ask your teacher."
        )

    failed_from: dict[str, tuple[int, float]]  # address -> (failed logins, last one's time)

    def rank(self, username: str, address: str) -> int:
        """Recent failed logins of this name and from this address: who waits longer."""
        count, when = self.failed_from.get(address, (0, 0.0))
        recent = count if time.monotonic() - when < self.seconds_before_next_try else 0
        return recent + self.login_attempts.get(username, {}).get("count", 0)

    def failed(self, username: str | None, address: str) -> None:
        if username is not None:  # only real names are counted: the table cannot be flooded
            self.add_login_attempt(username)
        if len(self.failed_from) > 10_000:  # forget the oldest half, not the recent ones
            keep = sorted(self.failed_from.items(), key=lambda item: item[1][1])[5_000:]
            self.failed_from = dict(keep)
        count, _ = self.failed_from.get(address, (0, 0.0))
        self.failed_from[address] = (count + 1, time.monotonic())

    async def authenticate(self, handler, data):
        username = self.normalize_username(data.get("username", ""))
        address = handler.request.remote_ip
        if self.is_blocked(username):
            handler.login_error = self.lockout_message(username)
            self.log.warning("login as %s refused: locked after failed attempts", username)
            return None
        user = find(self.db, username)
        rank = self.rank(username, address)
        if user is None or not await password_matches(
            data.get("password", ""), user.password, rank
        ):
            self.failed(username if user is not None else None, address)
            return None
        if not user.is_authorized:
            handler.login_error = f"{username} has not been approved by a teacher yet."
            return None
        self.successful_login(username)
        return username

    def get_handlers(self, app):
        return [
            (r"/login", LoginHandler),
            (r"/signup", SignUpHandler),
            (r"/authorize", AuthorizationAreaHandler),
            (r"/authorize/([^/]+)", AuthorizeHandler),
            (r"/discard/([^/]+)", DiscardHandler),
            (r"/change-password", ChangePasswordHandler),
            (r"/change-password/([^/]+)", ChangePasswordAdminHandler),
        ]


def _render(handler, template: str, message: str, ok: bool, **values):
    alert = "alert-success" if ok else "alert-danger"
    return handler.render_template(template, result_message=message, alert=alert, **values)


class LoginHandler(NativeLoginHandler):
    """The login form; a failed login says why without hashing the password a second time
    in the event loop (NativeAuthenticator's does)."""

    login_error = "Invalid username or password."

    async def post(self):
        data = {name: self.get_argument(name, strip=False) for name in self.request.arguments}
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        html = await self._render(login_error=self.login_error, username=data.get("username"))
        self.finish(html)


class SignUpHandler(LocalBase):
    async def get(self):
        self.finish(await self.render_template("signup.html", ask_email=False))

    async def post(self):
        auth = self.authenticator
        raw = self.get_body_argument("username", "", strip=False)
        password = self.get_body_argument("signup_password", "", strip=False)
        again = self.get_body_argument("signup_password_confirmation", "", strip=False)
        username = auth.normalize_username(raw)

        def problem() -> str | None:
            return (
                auth.username_problem(raw)
                or (find(self.db, username) and f"{username} is taken: choose another username")
                or (password != again and "The two passwords differ: type them again")
                or auth.password_problem(username, password)
            )

        why = problem()
        if why is None:
            hashed = await password_hash(password)
            why = problem()  # another sign-up may have taken the name meanwhile
            if why is None:
                self.db.add(UserInfo(username=username, password=hashed))
                self.db.commit()
                self.log.info("sign-up: %s waits for a teacher's approval", username)
        message = why or f"Signed up as {username}. A teacher approves you; then log in."
        self.finish(await _render(self, "signup.html", message, why is None, ask_email=False))


class AuthorizationAreaHandler(LocalBase):
    @admin_only
    async def get(self):
        users = self.db.query(UserInfo).order_by(UserInfo.username).all()
        self.finish(await self.render_template("authorization-area.html", users=users))


class AuthorizeHandler(LocalBase):
    """POST only (with the XSRF token): approve, or with ``approve=0`` revoke."""

    @admin_only
    async def post(self, username):
        user = find(self.db, username)
        if user is None:
            raise web.HTTPError(404, f"no sign-up named {username}")
        user.is_authorized = self.get_body_argument("approve", "1") == "1"
        self.db.commit()
        verb = "approved" if user.is_authorized else "revoked"
        self.log.info("%s %s %s", self.current_user.name, verb, username)
        self.redirect(self.hub.base_url + "authorize")


class DiscardHandler(LocalBase):
    """POST only: delete a sign-up that was never approved."""

    @admin_only
    async def post(self, username):
        user = find(self.db, username)
        if user is not None and not user.is_authorized:
            self.db.delete(user)
            self.db.commit()
            if self.users.get(username) is not None:
                self.users.delete(username)
        self.redirect(self.hub.base_url + "authorize")


class ChangePasswordHandler(LocalBase):
    @web.authenticated
    async def get(self):
        user = await self.get_current_user()
        self.finish(await self.render_template("change-password.html", user_name=user.name))

    @web.authenticated
    async def post(self):
        user = await self.get_current_user()
        old = self.get_body_argument("old_password", "", strip=False)
        new = self.get_body_argument("new_password", "", strip=False)
        again = self.get_body_argument("new_password_confirmation", "", strip=False)
        record = find(self.db, user.name)
        if record is None or not await password_matches(old, record.password):
            why = "Your current password was wrong: try again"
        else:
            why = (new != again and "The two new passwords differ: type them again") or (
                self.authenticator.password_problem(user.name, new)
            )
        if why is None:
            record.password = await password_hash(new)
            self.db.commit()
        message = why or "Your password has been changed."
        self.finish(
            await _render(self, "change-password.html", message, why is None, user_name=user.name)
        )


class ChangePasswordAdminHandler(LocalBase):
    @admin_only
    async def get(self, username):
        if find(self.db, username) is None:
            raise web.HTTPError(404)
        self.finish(await self.render_template("change-password-admin.html", user_name=username))

    @admin_only
    async def post(self, username):
        record = find(self.db, username)
        if record is None:
            raise web.HTTPError(404)
        new = self.get_body_argument("new_password", "", strip=False)
        again = self.get_body_argument("new_password_confirmation", "", strip=False)
        why = (new != again and "The two passwords differ: type them again") or (
            self.authenticator.password_problem(username, new)
        )
        if why is None:
            record.password = await password_hash(new)
            self.db.commit()
        message = why or f"The password of {username} has been changed."
        self.finish(
            await _render(
                self, "change-password-admin.html", message, why is None, user_name=username
            )
        )


# --- `invoke hub-admin NAME`: the teacher gives an admin its password ---------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m classroom_auth", description="Set the password of a hub admin."
    )
    parser.add_argument("command", choices=["admin"])
    parser.add_argument("name", help="an admin's name, listed in HUB_ADMINS")
    parser.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    args = parser.parse_args(argv)
    try:
        settings = hub.settings_from_env()
    except hub.HubConfigError as problem:
        return _fail(str(problem))
    name = args.name.strip().lower()
    if name not in settings.admins:
        return _fail(
            f"{name} is not in HUB_ADMINS ({', '.join(sorted(settings.admins))}): add it there "
            "(.env), run `invoke hub-up`, then this again"
        )
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"new password for {name}: ")
        if getpass.getpass("again: ") != password:
            return _fail("the two passwords differ; nothing changed")
    if why := hub.password_problem(name, password, common_passwords()):
        return _fail(f"{why}; nothing changed")
    database = hub.STATE_DIR / "jupyterhub.sqlite"
    if not database.is_file():
        return _fail(f"no hub database at {database}: start the hub first (`invoke hub-up`)")
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(f"sqlite:///{database}")
    UserInfo.__table__.create(engine, checkfirst=True)
    with Session(engine) as db:
        record = find(db, name) or UserInfo(username=name, password=b"")
        record.password = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
        record.is_authorized = True
        db.add(record)
        db.commit()
    print(f"{name} can log in now, as an admin of this hub")
    return 0


def _fail(message: str) -> int:
    print(f"hub-admin: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
