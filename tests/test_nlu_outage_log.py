"""A Rasa outage writes a log line every NLU_WARNING_EVERY_SECS, not one per resident message."""

from __future__ import annotations

import logging

from bot import policy
from bot.content import Content
from bot.nlu import NluResult, NluUnavailable
from bot.policy import Bot
from bot.settings import Settings


class SwitchableNlu:
    url = "switchable"
    down = True

    async def parse(self, text: str) -> NluResult:
        if self.down:
            raise NluUnavailable("Rasa at switchable did not answer: ClientConnectorError")
        return NluResult("housing_allowance", 0.9, (("housing_allowance", 0.9),))

    async def close(self) -> None:
        pass


async def test_an_outage_is_logged_once_per_interval_not_per_message(caplog, monkeypatch):
    nlu = SwitchableNlu()
    bot = Bot(Content.load(Settings(environ={}).training_data_dir), nlu)
    clock = [1000.0]
    monkeypatch.setattr(policy.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="bot.policy"):
        for _ in range(100):
            assert not (await bot.parse("miten haen asumistukea")).nlu_available
        clock[0] += policy.NLU_WARNING_EVERY_SECS
        await bot.parse("miten haen asumistukea")
        nlu.down = False
        assert (await bot.parse("miten haen asumistukea")).nlu_available
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.policy"]
    assert len(lines) == 3, lines
    assert lines[0].startswith("NLU unavailable") and "since the last line" not in lines[0]
    assert "(100 parses failed since the last line)" in lines[1]
    assert lines[2] == "NLU answers again (0 more parses had failed)"
