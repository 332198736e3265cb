"""One way into Ray: :func:`connect` joins the run's cluster, or starts a local Ray, once per process.

The phases, the commands and the pipeline call it instead of ``ray.init``, so what a driver
does on first contact with Ray (which address, whether the workers' output is printed here)
is set in one place.
Ray's workers read and write the run root themselves: with ``run.root`` on object storage
(``s3://...``) every node needs the credentials (an instance role, or the ``AWS_*`` variables
in the nodes' environment); a local Ray's workers get the environment this process had when it
started that Ray.
"""

from __future__ import annotations


def connect(address: str | None = None, *, log_to_driver: bool | None = None,
            include_dashboard: bool | None = None) -> bool:
    """Join ``address`` unless this process already has Ray.

    Args:
        address: the phase's ``ray.address`` / ``--ray-address`` (``auto``, ``host:port``,
            ``ray://...``, or ``local`` for a fresh local Ray); None: ``RAY_ADDRESS``, else a
            new local Ray.
        log_to_driver: print the workers' output in this process (None: Ray's default, yes).
        include_dashboard: start the dashboard with a local Ray (None: Ray decides).

    Returns:
        True when this call initialised Ray; False when it was already initialised (nothing done).
    """
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=log_to_driver,
             include_dashboard=include_dashboard)
    return True
