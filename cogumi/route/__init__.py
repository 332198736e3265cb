"""Phase 4: the router — confidence features, calibration, router MLP, domain classifier, escalation.

This package owns the routing contract the serving layer depends on (one way: route
never imports serve): ``contract`` (:class:`RouteDecision`, the :class:`Router`
protocol), ``builtin`` (:class:`CascadeRouter`, the keyword/phrase default), ``artifact``
(the trained router) and ``loader`` (``load_router``: which of the two serves).
``cogumi router`` builds the artifact. Nothing is imported here: ``cogumi.config``
imports ``cogumi.route.config`` and must not pull in the models stack.
"""
