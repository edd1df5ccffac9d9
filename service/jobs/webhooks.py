"""The webhook delivery task: one job per delivery, queued by a trigger (migration 0009_webhooks), retried by
procrastinate with exponential backoff until the receiver answers 2xx or the tries run out."""

from __future__ import annotations

import procrastinate
from procrastinate import RetryStrategy

from service.domain.notify import webhooks
from service.settings import JobsSettings

DELIVER_TASK = "soundalike:webhook-deliver"  # the name migration 0009_webhooks queues (with its queue)


class DeliveryFailed(Exception):
    """The receiver did not take the delivery this time; procrastinate runs the job again later."""


def register_webhook_tasks(app: procrastinate.App, jobs: JobsSettings, queue: str) -> None:
    retry = RetryStrategy(
        max_attempts=jobs.webhook_attempts - 1,
        exponential_wait=jobs.webhook_backoff_seconds,
        retry_exceptions=[DeliveryFailed],
    )

    settings = webhooks.DeliverySettings(
        max_attempts=jobs.webhook_attempts,
        timeout_seconds=jobs.webhook_timeout_seconds,
        allow_private_hosts=jobs.webhook_allow_private_hosts,
    )

    async def deliver(context: procrastinate.JobContext, delivery_id: int) -> str:
        runtime = context.additional_context["runtime"]
        attempt = await webhooks.deliver(runtime.sessions, delivery_id, context.job.attempts + 1, settings)
        if attempt.retry:
            raise DeliveryFailed(attempt.error or "no answer")
        return attempt.status

    app.task(name=DELIVER_TASK, queue=queue, pass_context=True, retry=retry)(deliver)
