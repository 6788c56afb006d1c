"""Stream tokens bind a Media Stream to its webhook, and to the parameters it set."""

from __future__ import annotations

import pytest

from app.errors import SignatureError
from app.twilio.stream_tokens import MemoryUsedTokens, StreamTokens


async def test_a_token_covers_the_parameters_it_was_issued_with() -> None:
    tokens = StreamTokens(b"k", 60, MemoryUsedTokens())
    covers = {"agent": "sales", "from": "+1555"}
    token = tokens.issue("CA1", covers=covers)
    with pytest.raises(SignatureError, match="does not match"):
        await tokens.redeem("CA1", token, covers=covers | {"agent": "vip"})
    with pytest.raises(SignatureError, match="does not match"):
        await tokens.redeem("CA1", token)
    await tokens.redeem("CA1", token, covers=dict(reversed(covers.items())))  # order-free
