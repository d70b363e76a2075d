"""Parse latency and throughput: our path (Bot.parse: redaction, crisis lexicon,
language, HTTP to Rasa, threshold) beside Rasa's own /model/parse called
directly, interleaved in the same run so machine drift hits both alike."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import yaml

from bot.policy import Bot
from bot.redact import redact
from bot.safety import crisis_check
from bot.language import detect_language
from bot.rasa_server import ensure_rasa
from bot.settings import PROJECT_ROOT, Settings

from .stats import percentile, summary_ms


async def _run(settings: Settings, rounds: int, concurrency: int) -> None:
    items = yaml.safe_load((PROJECT_ROOT / "tests" / "data" / "heldout.yml").read_text(encoding="utf-8"))
    texts = [item["text"] for item in items]
    bot = Bot.from_settings(settings)
    url = settings.rasa_urls[0] + "/model/parse"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def rasa_direct(text: str) -> None:
            async with session.post(url, json={"text": text}) as resp:
                await resp.json()

        # warm up both paths
        for text in texts[:20]:
            await rasa_direct(text)
            await bot.parse(text)
        ours, theirs = [], []
        for i in range(rounds):
            text = texts[i % len(texts)]
            order = ((bot.parse, ours), (rasa_direct, theirs))
            for func, samples in (order if i % 2 else order[::-1]):
                start = time.perf_counter()
                await func(text)
                samples.append(time.perf_counter() - start)
        print(f"Sequential parse, {rounds} messages each, interleaved:")
        print(f"  Rasa /model/parse direct : {summary_ms(theirs)}")
        print(f"  our path (Bot.parse)     : {summary_ms(ours)}")
        print(f"  added by our path        : p50 {1000 * (percentile(ours, 50) - percentile(theirs, 50)):+.2f} ms"
              f"  p99 {1000 * (percentile(ours, 99) - percentile(theirs, 99)):+.2f} ms")

        start = time.perf_counter()
        for _ in range(20):
            for text in texts:
                detect_language(redact(text))
                crisis_check(text)
        local = (time.perf_counter() - start) / (20 * len(texts))
        print(f"  our in-process work alone (redact + crisis lexicon + language): {local * 1e6:.1f} µs per message")

        for name, func in (("Rasa /model/parse direct", rasa_direct), ("our path (Bot.parse)", bot.parse)):
            queue = list(range(rounds))
            started = time.perf_counter()

            async def worker() -> None:
                while queue:
                    i = queue.pop()
                    await func(texts[i % len(texts)])

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            print(f"Throughput with {concurrency} concurrent clients, {name}: {rounds / elapsed:.0f} parses/s")
    await bot.close()


def main(args) -> None:
    # One Rasa server for both paths: this compares our path's overhead, not two servers with one.
    settings = Settings()
    settings = settings.replace(POLKU_RASA_URL=settings.rasa_urls[0])
    started = ensure_rasa(settings, log=print)
    try:
        asyncio.run(_run(settings, args.rounds, args.concurrency))
    finally:
        for process in started:
            process.stop()
