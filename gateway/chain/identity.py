"""Identity fields of the event — the end user (``user`` / ``safety_identifier`` / ``gatewatch.end_user`` /
``x-gatewatch-end-user``) and the request metadata values (``gatewatch.metadata`` / ``x-gatewatch-meta-*``)
— under the tenant's events policy, like the message text:

- ``pii.identity: scan`` (default): each value gets the events PII map (an e-mail address as an end-user
  id becomes ``<EMAIL_ADDRESS>``; an opaque id stays as it is);
- ``pii.identity: hash``: each whole value is replaced by a keyed hash (``<END_USER:3f1c0a9b2d4e>``,
  ``<METADATA:...>``), stable while ``governance.hash_secret`` is (per process without one), so exchanges
  of one user still group together without the id being stored.

Metadata *names* are kept as sent (they are the tenant's schema, not user data). Fail closed: when the
values cannot be secured (no policy, the redactor failed, the request was cancelled) they are dropped
from the event, never stored raw. The upstream ``user`` field gets the *input* PII map with the rest of
the request text (the endpoint adapter's ``request_texts``, gateway/endpoints).
"""

from __future__ import annotations

import logging

from gateway.exchange import Exchange
from gateway.governance.compiled import CompiledPolicy
from gateway.redaction.operators import Hasher

log = logging.getLogger(__name__)
_DONE = "identity_secured"


def has_identity(ex: Exchange) -> bool:
    return not ex.scratch.get(_DONE) and (ex.end_user is not None or bool(ex.metadata))


def drop_identity(ex: Exchange) -> None:
    ex.end_user = None
    ex.metadata = {}
    ex.scratch[_DONE] = True


async def secure_identity(ex: Exchange, pol: CompiledPolicy | None, hasher: Hasher) -> None:
    """Replace ``ex.end_user`` and the metadata values by what the events policy stores (once)."""
    if not has_identity(ex):
        return
    if pol is None:
        drop_identity(ex)
        return
    names = list(ex.metadata)
    values = [ex.metadata[n] for n in names]
    if ex.end_user is not None:
        values.append(ex.end_user)
    if pol.policy.pii.identity == "hash":
        out = [hasher("METADATA", v) for v in values[:len(names)]]
        if ex.end_user is not None:
            out.append(hasher("END_USER", ex.end_user))
    elif pol.events_actions and pol.redactor is not None:
        try:
            results = await pol.redactor.redact_many(values, pol.events_actions, scope=ex.tenant)
        except Exception as exc:  # noqa: BLE001 - nothing unredacted may reach the event: store none of it
            log.warning("events redaction of identity fields failed (%s); they are left out of the event",
                        type(exc).__name__)
            drop_identity(ex)
            return
        out = [r.text for r in results]
        for r in results:
            for e, n in r.counts.items():
                ex.pii_counts[e] = ex.pii_counts.get(e, 0) + n
    else:  # the events policy stores text raw: so these too
        out = values
    ex.metadata = dict(zip(names, out[:len(names)], strict=True))
    if ex.end_user is not None:
        ex.end_user = out[-1]
    ex.scratch[_DONE] = True
