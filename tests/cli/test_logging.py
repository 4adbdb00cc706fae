"""The CLI's log set-up keeps presidio's start-up chatter out of the console (the banner comes first)."""

from __future__ import annotations

import logging

import pytest

from gatewatch.cli import quiet_presidio


def test_presidio_startup_noise_is_dropped_but_real_warnings_stay(caplog: pytest.LogCaptureFixture) -> None:
    from presidio_analyzer import RecognizerRegistry

    logger = logging.getLogger("presidio-analyzer")
    old_level, old_filters = logger.level, list(logger.filters)
    try:
        quiet_presidio()
        with caplog.at_level(logging.INFO):
            RecognizerRegistry().load_predefined_recognizers(languages=["en"])
            logger.warning("a real problem")
        presidio = [r for r in caplog.records if r.name == "presidio-analyzer"]
        assert [r.getMessage() for r in presidio] == ["a real problem"]
    finally:
        logger.setLevel(old_level)
        logger.filters[:] = old_filters
