"""Colours and icons of the impact types, shared by the pages, the widget,
the badges and the share image (the certificate's accents, so a profile and
its certificates look like one family)."""

from __future__ import annotations

ACCENTS = {
    "tree_planted": "#2e7d32",
    "waste_removed": "#1565c0",
    "carbon_captured": "#546e7a",
    "coral_restored": "#c2185b",
    "money_donated": "#b07d0b",
}

# Stroked 24x24 outlines: a tree, waves, a cloud, a coral branch, a heart.
# Drawn inline (SVG markup, not images), so a host page whose CSP allows no
# images still shows them, and no request leaves for them.
ICON_PATHS = {
    "tree_planted": "M12 3 6 11h3.5L5 17h14l-4.5-6H18z M12 17v4",
    "waste_removed": "M3 9c3 0 3-2 6-2s3 2 6 2 3-2 6-2 M3 15c3 0 3-2 6-2s3 2 6 2 3-2 6-2 "
    "M3 21c3 0 3-2 6-2s3 2 6 2 3-2 6-2",
    "carbon_captured": "M7 19h10a4 4 0 0 0 .5-7.97A6 6 0 0 0 6.1 10.2 4.5 4.5 0 0 0 7 19z",
    "coral_restored": "M12 21v-9 M12 12 8 8V4 M12 12l4-4V5 M8 8 5 6 M16 8l3-3 M12 12V3",
    "money_donated": "M12 20s-7-4.4-7-10a4 4 0 0 1 7-2.6A4 4 0 0 1 19 10c0 5.6-7 10-7 10z",
}
