"""The web explorer: server-rendered pages and a little plain JavaScript, served by the app at ``/``.

Pages read the session cookie themselves (signed-out visitors go to the sign-in page); their scripts call the
same ``/v1`` API as any client, with the cookie instead of a bearer header.
"""

WEB_PATHS = [
    "^/$",
    "^/signin$",
    "^/session$",
    "^/signout$",
    "^/generate$",
    "^/library$",
    "^/like/",
    "^/map$",
    "^/static/",
]
