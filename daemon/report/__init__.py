"""The continual improvement report (`helpdesk report`, and its scheduled mailing).

figures.py computes (pure), render.py and page.py make text, JSON and the HTML page (pure),
collect.py reads the store for them, mailing.py sends the report to managers on the
`[reports]` schedule inside `serve`, command.py is the CLI.
"""
