"""The web console: talk to the agent from a browser, watch calls live, review them.

    auth.py     login with ADMIN_TOKEN, signed session cookie, Origin checks
    events.py   the per-call event bus (bounded per-watcher queues)
    watch.py    the recorder tee that publishes a call's events to the bus
    webcall.py  browser calls over the Media Streams protocol, same path as phone calls
    listen.py   supervisor listen-in (both sides' audio, read-only)
    routes.py   pages, static files, the JSON API and the event streams
    static/     the pages: HTML, CSS and ES modules served as files (no build step)

See docs/console.md.
"""
