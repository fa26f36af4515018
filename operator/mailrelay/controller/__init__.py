"""The operator: kopf handlers, reconcile passes, apply, status, delivery health."""
