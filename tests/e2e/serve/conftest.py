from tests.unit.serve.support import api_server, base_worker, code_lora, modifier_worker  # noqa: F401
