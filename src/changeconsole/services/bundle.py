"""The set of services one console (or CLI session) works with, built once from config + AWS settings.

Screens reach services only through this object (``app.services``); each service is created on
first use so a screen that never needs one never pays for it.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from ..models import Config
from .authz import Authorizer
from .aws import AwsFactory
from .status import StatusStore

if TYPE_CHECKING:
    from .audit import AuditReader
    from .bulk import BulkTransitions
    from .contact_admin import ContactBook
    from .customer_admin import CustomerVerifier
    from .customers import CustomerService
    from .delivery_detail import DeliveryDetailService
    from .dlq import DlqService
    from .lifecycle import ChangeService
    from .preview import PreviewService
    from .reports import ReportService
    from .resend import ResendService
    from .templates import TemplateStore


class Services:
    def __init__(
        self, aws: AwsFactory, config: Config, *, readonly: bool = False, authz: Authorizer | None = None
    ) -> None:
        self.aws = aws
        self.config = config
        self.readonly = readonly
        # The one authorization point every service of this front end passes through.
        self.authz = authz or Authorizer(aws, config, via="console")

    @property
    def environment_label(self) -> str:
        return self.aws.settings.environment_label

    @cached_property
    def status(self) -> StatusStore:
        return StatusStore(self.aws, self.config)

    @cached_property
    def changes(self) -> ChangeService:
        from .lifecycle import ChangeService

        return ChangeService(self.aws, self.config, status=self.status, authz=self.authz)

    @cached_property
    def preview(self) -> PreviewService:
        from .preview import PreviewService

        return PreviewService(self.aws, self.config, authz=self.authz)

    @cached_property
    def templates(self) -> TemplateStore:
        from .templates import TemplateStore

        return TemplateStore(self.aws, self.config, authz=self.authz)

    @cached_property
    def reports(self) -> ReportService:
        from .reports import ReportService

        return ReportService(self.status, self.config, authz=self.authz)

    @cached_property
    def bulk(self) -> BulkTransitions:
        from .bulk import BulkTransitions

        return BulkTransitions(self.changes)

    @cached_property
    def customers(self) -> CustomerService:
        from .customers import CustomerService

        return CustomerService(self.aws, self.config, authz=self.authz)

    @cached_property
    def dlq(self) -> DlqService:
        from .dlq import DlqService

        return DlqService(self.aws, self.config, authz=self.authz)

    @cached_property
    def delivery_detail(self) -> DeliveryDetailService:
        from .delivery_detail import DeliveryDetailService

        return DeliveryDetailService(self.aws, self.config, self.customers)

    @cached_property
    def resend(self) -> ResendService:
        from .resend import ResendService

        return ResendService(self.aws, self.config, status=self.status, authz=self.authz)

    @cached_property
    def verifier(self) -> CustomerVerifier:
        from .customer_admin import CustomerVerifier

        return CustomerVerifier(self.aws, self.config, authz=self.authz)

    def contact_book(self, code: str) -> ContactBook:
        """One customer's contacts; writes are paced to SES's 1/s, except against a local emulator."""
        from .contact_admin import DEFAULT_RATE, ContactBook

        rate = None if self.aws.settings.loopback_endpoint else DEFAULT_RATE
        return ContactBook(self.aws, self.config, code, rate=rate, authz=self.authz)

    @cached_property
    def audit(self) -> AuditReader:
        from .audit import AuditReader

        return AuditReader(self.aws, self.config, authz=self.authz)
