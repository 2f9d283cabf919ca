"""The study runner and what it needs: profiles (inheritance and schema), run cards, reports, plots.

    python -m serlib.study --params default
"""
