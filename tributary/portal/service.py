"""Running the portal: the read path (the ClickHouse sink's read-only query server, or a
read-only ClickHouse session), the dispute path (review-requests on Kafka) and the HTTP
server (uvicorn), with structured logs and Prometheus metrics on the same port."""

from __future__ import annotations

import logging
import os
from typing import Any

from tributary import kafka
from tributary.config import PipelineConfig, PlatformConfig
from tributary.portal.app import LoginLink, Portal, create_app
from tributary.portal.auth import Signer, load_secret
from tributary.reports import runner
from tributary.topics import Topic

log = logging.getLogger("tributary.portal")


def build(cfg: PlatformConfig, pipeline: PipelineConfig, login_link: LoginLink | None = None) -> Portal:
    """``login_link``: makes a holder's Stripe Express dashboard link (the CLI passes the
    Stripe sink's; None hides the button)."""
    def publish(topic: str, key: str, record: dict[str, Any]) -> None:
        from schemas import first_problem

        problem = first_problem("review-request.v1", record)
        if problem is not None:  # the portal built it: a bug, never the holder's fault
            raise ValueError(f"review request does not match review-request.v1: {problem}")
        assert topic == Topic.REVIEW_REQUESTS.value
        kafka.publish(cfg.bootstrap_servers, topic, [(key, record)], "dispute")

    return Portal(run=runner(cfg), signer=Signer(load_secret(cfg.run_dir)), defaults=pipeline.payout_policy,
                  publish=publish, login_link=login_link,
                  secure_cookies=os.environ.get("TRIBUTARY_PORTAL_SECURE_COOKIES", "0") == "1")


def serve(cfg: PlatformConfig, pipeline: PipelineConfig, host: str, port: int,
          login_link: LoginLink | None = None) -> None:
    import uvicorn

    app = create_app(build(cfg, pipeline, login_link))
    log.info("portal listening on http://%s:%s (sign-in links: tributary portal link <holder>)", host, port)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False)
