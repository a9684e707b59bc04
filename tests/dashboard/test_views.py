"""Pure helpers of the dashboard's pages."""

from __future__ import annotations

import pytest

from openimpact.dashboard.views import figure, video_embed, when


class TestVideoEmbed:
    @pytest.mark.parametrize(
        ("link", "player"),
        [
            (
                "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
                "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
            ),
            (
                "https://youtu.be/dQw4w9WgXcQ?t=3",
                "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
            ),
            (
                "https://m.youtube.com/shorts/abcDEF12345",
                "https://www.youtube-nocookie.com/embed/abcDEF12345",
            ),
            ("https://vimeo.com/123456789", "https://player.vimeo.com/video/123456789"),
            ("https://player.vimeo.com/video/42", "https://player.vimeo.com/video/42"),
        ],
    )
    def test_known_video_links_become_players(self, link: str, player: str) -> None:
        assert video_embed(link) == player

    @pytest.mark.parametrize(
        "link",
        [
            None,
            "",
            "https://meet.google.com/ynx-sgcq-dbd",
            "javascript:alert(1)//youtube.com/watch?v=dQw4w9WgXcQ",
            "https://www.youtube.com/watch?v=%22onload%3D",
            "https://evil.example/youtube.com/watch?v=dQw4w9WgXcQ",
            "ftp://vimeo.com/123",
        ],
    )
    def test_anything_else_stays_a_link(self, link: str | None) -> None:
        assert video_embed(link) is None


def test_figures_are_exact() -> None:
    assert figure("tree_planted", 4321) == "4,321"
    assert figure("waste_removed", 1_000_000) == "1,000,000"
    assert figure("money_donated", 123456) == "$1,234.56"
    assert figure("money_donated", 5) == "$0.05"
    assert figure("money_donated", -250) == "-$2.50"
    assert figure("coral_restored", None) == "0"


def test_times_are_shown_in_utc_to_the_minute() -> None:
    assert when("2026-11-22T09:14:03.271Z") == "2026-11-22 09:14 UTC"
    assert when(None) == ""
