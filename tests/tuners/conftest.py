"""The PE-method tests: a test-only method folder (`scale_method`) is registered before collection, so every test
parametrised over the registry (helpers.METHODS) runs it too."""
import tests.tuners.scale_method  # noqa: F401  (registers pe.method=scale)
