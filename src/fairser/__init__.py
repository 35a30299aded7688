"""fairser: a staged pipeline for fair multi-label speech emotion recognition, and `fairser audit`.

The package's one name for notebooks is `audit_predictions` (`from fairser import
audit_predictions`), the `fairser audit` command as a function (fairser.audit). It is loaded on
first use, so importing any fairser module stays as light as that module.
"""

__all__ = ["audit_predictions"]


def __getattr__(name: str):
    if name == "audit_predictions":
        from fairser.audit import audit_predictions

        return audit_predictions
    raise AttributeError(f"module 'fairser' has no attribute {name!r}")
