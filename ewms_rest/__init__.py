"""REST plumbing shared by the services (the WMS, skydriver) and their clients (the TMS, scanners, CLIs).

One place for what every service does the same way: OpenAPI-validated input with errors naming the
field (`validation`), bearer-token roles (`auth`), JSON errors and 503 for an unavailable backend
(`handler`), the tornado application (`app`), structured logs that keep secrets out (`logs`), how a
client tells "try again later" from "no" (`client`), and local-mode tokens (`tokens`).
"""
