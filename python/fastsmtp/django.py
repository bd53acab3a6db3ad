"""A Django email backend on fastsmtp: ``EMAIL_BACKEND = "fastsmtp.django.EmailBackend"``.

It reads the settings Django's own SMTP backend reads (``EMAIL_HOST``, ``EMAIL_PORT``,
``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS``, ``EMAIL_USE_SSL``,
``EMAIL_TIMEOUT``, ``EMAIL_SSL_CERTFILE``, ``EMAIL_SSL_KEYFILE``) and takes the same
constructor arguments, so ``get_connection(...)`` calls keep working. TLS follows Django:
``EMAIL_USE_TLS`` is STARTTLS (required, certificate verified), ``EMAIL_USE_SSL`` is
implicit TLS, neither is plaintext (``tls="none"``). A ``FASTSMTP`` settings dict passes
engine options on top::

    FASTSMTP = {
        "connections": 4,           # pool size (default 8)
        "rate_limit": 50,           # messages per second
        "cafile": "/etc/ssl/my-ca.pem",   # or "ssl_context": an ssl.SSLContext
        "tls": "opportunistic",     # overrides EMAIL_USE_TLS/EMAIL_USE_SSL
        "allow_plaintext_auth": True,     # credentials without TLS: refused unless set
        "send_timeout": 120,        # how long send_messages waits (default: no limit)
    }

Any other ``fastsmtp.Engine`` keyword (``max_attempts``, ``window``, ``idle_timeout``...) is
accepted as well. Unlike Django's backend, fastsmtp never sends a password over a plaintext
connection unless ``allow_plaintext_auth`` is set.

Django 6.1's ``MAILERS`` setting works as for Django's SMTP backend: ``OPTIONS`` take
``host`` (required), ``port`` (465 with ``use_ssl``, 587 with ``use_tls``, else 25),
``username``, ``password``, ``use_tls``, ``use_ssl``, ``timeout``, ``ssl_keyfile``,
``ssl_certfile`` and ``fail_silently``, plus any engine option; ``FASTSMTP`` applies
under every alias, OPTIONS on top::

    MAILERS = {
        "default": {
            "BACKEND": "fastsmtp.django.EmailBackend",
            "OPTIONS": {"host": "smtp.example.com", "use_tls": True, "connections": 4},
        },
    }

A configuration error in an entry raises Django's ``InvalidMailer`` naming the alias.
``fail_silently`` stays the backend's own option (Django 6.1 deprecates only handing it to
``BaseEmailBackend``, which this backend never does). Supported: Django 4.2 LTS through 6.x.

One engine (one connection pool) per process and distinct configuration serves every
backend instance, thread and request: it lives on a background thread running its own
event loop (uvloop when installed), is started on first use, and is closed at interpreter
exit (``atexit``; ``shutdown()`` does it by hand). ``open()`` and ``close()`` therefore
keep the pool open: connections persist across ``send_messages`` calls.

``send_messages`` converts each message to a ``fastsmtp.Message`` so that MIME is built in
Rust; what cannot be represented is sent as Django's own bytes (see ``_django_convert``
for the list). It returns how many messages at least one recipient accepted, and leaves
``message.fastsmtp_results`` (one ``fastsmtp.Result`` per envelope recipient) on every
message. With ``fail_silently=False`` it raises after all messages were tried: the error
of the first message that failed to build, or ``MessageNotSent`` for the first message no
recipient accepted.

Batch mode follows django-anymail: a message with ``merge_data`` (a dict keyed by
address) and/or ``merge_global_data`` sends one personalized message to each ``to``
address (anymail sends a single message when only ``merge_global_data`` is set). Subject,
bodies and extra header values are fastsmtp templates (``{{ variable }}``; also
``{{ name }}`` and ``{{ address }}``). cc and bcc are refused there. Each recipient's data
comes from ``merge_data[address]`` (a missing entry means no personal data), over
``merge_global_data``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import logging
import os
import ssl
import threading
from collections.abc import Callable, Coroutine, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from fastsmtp._django_convert import BatchMessage, RawMessage, convert, to_batch
from fastsmtp._engine import Engine
from fastsmtp._errors import FastSMTPError, SMTPTimeoutError
from fastsmtp._models import Message, Result

if TYPE_CHECKING:
    pass

__all__ = ["EmailBackend", "MessageNotSent", "shutdown"]

log = logging.getLogger("fastsmtp.django")
T = TypeVar("T")

_ENGINE_OPTIONS = frozenset(inspect.signature(Engine).parameters) - {"host", "port"}
CLOSE_SETTLE = 0.05
"""Seconds the engine loop keeps running after the engines closed (see shutdown)."""
_BACKEND_OPTIONS = frozenset({"cafile", "send_timeout"})
# Django 6.1's mail API: MAILERS entries make backends with alias= and their OPTIONS.
_MAILERS_API = "alias" in inspect.signature(BaseEmailBackend.__init__).parameters
_FROM_DJANGO_SETTINGS = frozenset({"host", "port", "username", "password"})


class MessageNotSent(FastSMTPError):
    """No recipient of a message accepted it (``fail_silently=False``).

    ``email_message`` is the Django message and ``results`` its per-recipient Results.
    """

    def __init__(self, email_message: EmailMessage, results: list[Result]) -> None:
        first = results[0] if results else None
        detail = (
            f"{first.recipient}: {first.status} {first.code or ''} {first.text}" if first else ""
        )
        super().__init__(f"message {str(email_message.subject)!r} was not sent ({detail.strip()})")
        self.email_message = email_message
        self.results = results


# -- the engine thread -------------------------------------------------------------------------


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _Runner:
    """The background thread and event loop that own every engine made by the backend."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engines: dict[Hashable, Engine] = {}

    def engine(self, key: Hashable, make: Callable[[], Engine]) -> Engine:
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                self._start()
                engine = self._engines[key] = make()
            return engine

    def _start(self) -> None:
        if self._loop is not None:
            return
        loop = _new_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        # A daemon thread: it must never keep the interpreter alive; the atexit hook
        # closes the engines (which still runs while daemon threads are alive).
        thread = threading.Thread(target=main, name="fastsmtp-django", daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run ``coro`` on the engine loop and wait for its result (from any thread)."""
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the fastsmtp engine thread is not running")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("send_messages cannot be called from fastsmtp's own loop thread")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise SMTPTimeoutError(f"sending took longer than send_timeout={timeout} s") from None

    def shutdown(self, timeout: float = 30.0) -> None:
        """Close every engine (waiting up to ``timeout`` for queued mail) and stop the loop."""
        with self._lock:
            loop, thread, engines = self._loop, self._thread, list(self._engines.values())
            self._loop, self._thread, self._engines = None, None, {}
        if loop is None or thread is None:
            return

        async def close_all() -> None:
            await asyncio.gather(*(e.close() for e in engines), return_exceptions=True)
            # Engine.close() returns once QUIT is answered; a TLS transport still needs a
            # few loop turns to finish closing its socket.
            await asyncio.sleep(CLOSE_SETTLE)

        try:
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout)
        except Exception:
            log.warning("fastsmtp engines did not close within %s s", timeout, exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            try:
                loop.close()
            except OSError:  # uvloop: a handle still open; the process is exiting anyway
                log.debug("fastsmtp engine loop closed with open handles", exc_info=True)

    def forget(self) -> None:
        """After fork(): the child has no engine thread; start afresh on its first send."""
        self._lock = threading.Lock()
        self._loop, self._thread, self._engines = None, None, {}


_runner = _Runner()
atexit.register(_runner.shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_runner.forget)


def shutdown(timeout: float = 30.0) -> None:
    """Close the backend's engines now: wait for queued mail, QUIT, stop the loop thread.

    Runs at interpreter exit anyway; the next send starts a new engine.
    """
    _runner.shutdown(timeout)


# -- the backend -------------------------------------------------------------------------------


class EmailBackend(BaseEmailBackend):
    """Django email backend that sends through a persistent fastsmtp engine."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        *,
        alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Django 6.1 (MAILERS) names options Django passed for an older API that a backend
        # may not know; they are dropped when unknown (see mailers.create_connection).
        ignorable = set(kwargs.pop("_ignore_unknown_kwargs", None) or ())
        if _MAILERS_API:
            # fail_silently is the backend's own: handing it to BaseEmailBackend is
            # deprecated in Django 6.1.
            super().__init__(alias=alias)  # type: ignore[call-arg, unused-ignore]
        else:
            super().__init__(fail_silently=fail_silently)
        self.alias: str | None = alias
        self.fail_silently: bool = fail_silently
        if alias is None and not _mailers_configured():
            # The same defaults, in the same way, as django.core.mail.backends.smtp.
            self.host: str = host or settings.EMAIL_HOST
            self.port: int = port or settings.EMAIL_PORT
            self.username: str | None = settings.EMAIL_HOST_USER if username is None else username
            self.password: str | None = (
                settings.EMAIL_HOST_PASSWORD if password is None else password
            )
            self.use_tls: bool = settings.EMAIL_USE_TLS if use_tls is None else use_tls
            self.use_ssl: bool = settings.EMAIL_USE_SSL if use_ssl is None else use_ssl
            self.timeout: float | None = settings.EMAIL_TIMEOUT if timeout is None else timeout
            self.ssl_keyfile: str | None = (
                settings.EMAIL_SSL_KEYFILE if ssl_keyfile is None else ssl_keyfile
            )
            self.ssl_certfile: str | None = (
                settings.EMAIL_SSL_CERTFILE if ssl_certfile is None else ssl_certfile
            )
            if self.use_ssl and self.use_tls:
                raise ValueError(
                    "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set "
                    "one of those settings to True."
                )
        else:
            # A MAILERS entry (Django 6.1): OPTIONS only, with the SMTP backend's defaults.
            if host is None:
                raise self._invalid("OPTIONS must define 'host'.")
            self.use_tls = bool(use_tls)
            self.use_ssl = bool(use_ssl)
            if self.use_ssl and self.use_tls:
                raise self._invalid(
                    "The 'use_ssl' and 'use_tls' OPTIONS are incompatible. "
                    "Set at most one of them to True."
                )
            self.host = host
            self.port = port or (465 if self.use_ssl else 587 if self.use_tls else 25)
            self.username, self.password = username, password
            self.timeout, self.ssl_keyfile, self.ssl_certfile = timeout, ssl_keyfile, ssl_certfile
        configured = dict(getattr(settings, "FASTSMTP", None) or {})
        clash = _FROM_DJANGO_SETTINGS & configured.keys()
        if clash:
            raise ImproperlyConfigured(
                f"FASTSMTP cannot set {sorted(clash)}: use EMAIL_HOST, EMAIL_PORT, "
                "EMAIL_HOST_USER and EMAIL_HOST_PASSWORD (or MAILERS OPTIONS)"
            )
        kwargs = {k: v for k, v in kwargs.items() if k not in ignorable or _known(k)}
        _check_options(configured, "FASTSMTP setting")
        unknown = _unknown(kwargs)
        if unknown:
            what = "OPTIONS" if self.alias is not None else "EmailBackend argument(s)"
            raise self._invalid(f"unknown {what}: {', '.join(unknown)}")
        self.options: dict[str, Any] = {**configured, **kwargs}
        self.send_timeout: float | None = self.options.pop("send_timeout", None)

    def _invalid(self, message: str) -> ImproperlyConfigured:
        """A configuration error; Django 6.1's InvalidMailer (naming the alias) for MAILERS."""
        if self.alias is not None and _MAILERS_API:
            from django.core.mail import InvalidMailer  # type: ignore[attr-defined, unused-ignore]

            error: ImproperlyConfigured = InvalidMailer(message, alias=self.alias)
            return error
        return ImproperlyConfigured(message)

    # Engine -----------------------------------------------------------------------------------

    def _engine_options(self) -> dict[str, Any]:
        options = dict(self.options)
        cafile = options.pop("cafile", None)
        tls = options.pop("tls", None) or (
            "implicit" if self.use_ssl else "starttls" if self.use_tls else "none"
        )
        if "ssl_context" not in options and (cafile or self.ssl_certfile or self.ssl_keyfile):
            context = ssl.create_default_context(cafile=cafile)
            if self.ssl_certfile or self.ssl_keyfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)  # type: ignore[arg-type]
            options["ssl_context"] = context
        # Django logs in only when both are set; so do we.
        credentials = self.username and self.password
        options.update(
            host=self.host,
            port=int(self.port),
            tls=tls,
            username=self.username if credentials else None,
            password=self.password if credentials else None,
        )
        if self.timeout is not None:
            options["timeout"] = float(self.timeout)
        return options

    def _engine_key(self) -> Hashable:
        items = {
            **self.options,
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "use_tls": self.use_tls,
            "use_ssl": self.use_ssl,
            "timeout": self.timeout,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_certfile": self.ssl_certfile,
        }
        # Unhashable values (an SSLContext is hashable but compares by identity, as wanted).
        return tuple(sorted((k, v if isinstance(v, Hashable) else id(v)) for k, v in items.items()))

    @property
    def engine(self) -> Engine:
        """The shared engine for this configuration (created on first use)."""
        return _runner.engine(self._engine_key(), lambda: Engine(**self._engine_options()))

    def open(self) -> bool:
        """Make sure the shared engine exists. Connections open as mail is sent and stay open
        across calls; returns False (there is never a per-backend connection to open)."""
        self.engine  # noqa: B018 - creating it is the point
        return False

    def close(self) -> None:
        """Keep the pool: it is shared by the process (``shutdown()`` closes it)."""

    # Sending ----------------------------------------------------------------------------------

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send the messages concurrently over the shared pool; return how many were sent
        (at least one recipient accepted). Sets ``message.fastsmtp_results`` on each."""
        if not email_messages:
            return 0
        prepared: list[tuple[EmailMessage, Message | RawMessage | BatchMessage]] = []
        errors: dict[int, BaseException] = {}
        for message in email_messages:
            if not message.recipients():
                _set_results(message, [])  # Django skips these too, without an error
                continue
            try:
                prepared.append((message, _prepare(message)))
            except Exception as e:
                errors[id(message)] = e
        outcomes: list[list[Result] | BaseException] = []
        if prepared:
            try:
                outcomes = _runner.call(
                    _send_all(self.engine, [p for _, p in prepared]), self.send_timeout
                )
            except Exception:
                if not self.fail_silently:
                    raise
                return 0
        results_of = {id(m): r for (m, _), r in zip(prepared, outcomes, strict=True)}
        sent = 0
        first_error: BaseException | None = None
        for message in email_messages:
            outcome = results_of.get(id(message), errors.get(id(message)))
            if outcome is None:
                continue
            if isinstance(outcome, BaseException):
                failed = [
                    Result(recipient=r, status="failed", text=str(outcome), index=i)
                    for i, r in enumerate(message.recipients())
                ]
                _set_results(message, failed)
                first_error = first_error or outcome
                continue
            _set_results(message, outcome)
            if any(r.ok for r in outcome):
                sent += 1
            else:
                first_error = first_error or MessageNotSent(message, outcome)
        if first_error is not None and not self.fail_silently:
            raise first_error
        return sent


def _set_results(message: EmailMessage, results: list[Result]) -> None:
    # An attribute of our own on Django's object, as django-anymail does (anymail_status).
    message.fastsmtp_results = results  # type: ignore[attr-defined]


def _known(option: str) -> bool:
    return option in _ENGINE_OPTIONS or option in _BACKEND_OPTIONS


def _unknown(options: dict[str, Any]) -> list[str]:
    return sorted(k for k in options if not _known(k))


def _check_options(options: dict[str, Any], what: str) -> None:
    unknown = _unknown(options)
    if unknown:
        raise ImproperlyConfigured(f"unknown {what}(s): {', '.join(unknown)}")


def _mailers_configured() -> bool:
    """Django 6.1 with MAILERS set: the EMAIL_* settings are gone (reading one raises)."""
    return _MAILERS_API and hasattr(settings, "MAILERS")


def _prepare(message: EmailMessage) -> Message | RawMessage | BatchMessage:
    merge_data = getattr(message, "merge_data", None)
    merge_global_data = getattr(message, "merge_global_data", None)
    if merge_data is not None or merge_global_data is not None:
        return to_batch(message, merge_data or {}, merge_global_data)
    converted = convert(message)
    if isinstance(converted, RawMessage):
        log.debug("sending Django's own bytes: %s", converted.reason)
    return converted


async def _send_all(
    engine: Engine, items: list[Message | RawMessage | BatchMessage]
) -> list[list[Result] | BaseException]:
    return await asyncio.gather(
        *(_send_one(engine, item) for item in items), return_exceptions=True
    )


async def _send_one(engine: Engine, item: Message | RawMessage | BatchMessage) -> list[Result]:
    if isinstance(item, Message):
        return await engine.send(item)
    if isinstance(item, BatchMessage):
        results: list[Result] = []
        await engine.send_batch(
            item.template, item.recipients, data=item.data or None, on_result=results.append
        )
        return sorted(results, key=lambda r: r.index)
    return await _send_raw(engine, item)


# -- raw bytes ---------------------------------------------------------------------------------


async def _send_raw(engine: Engine, raw: RawMessage) -> list[Result]:
    if not raw.recipients:
        return []
    return await engine.send_raw(raw.sender, raw.recipients, raw.data, message_id=raw.message_id)
