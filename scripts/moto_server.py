"""moto's server for the tests, with its backends behind one lock.

`moto_server` handles requests on many threads, and its DynamoDB backend is not safe for that:
concurrent TransactWriteItems fail with "dictionary changed size during iteration". This runs
the same application, still accepting connections on many threads, but lets one request at a
time into moto.

    python scripts/moto_server.py PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1])
    application = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            return list(application(environ, start_response))

    run_simple("127.0.0.1", port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
