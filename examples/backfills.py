"""The example tables' backfills: plain SQL expressions over each row."""

from backfill import ExpressionDefinition, register


@register
class TicketCodes(ExpressionDefinition):
    name = "ticket_codes"
    model_label = "examples.Ticket"
    field_name = "code"
    description = "A short code from the ticket's subject (UUID keys)."
    expression = "upper(left(md5(subject), 8))"


@register
class ReadingLabels(ExpressionDefinition):
    name = "reading_labels"
    model_label = "examples.Reading"
    field_name = "label"
    description = "A label from the reading's value (keys with a gap of 10^12)."
    expression = "'r' || value"


@register
class MeasurementUnits(ExpressionDefinition):
    name = "measurement_units"
    model_label = "examples.Measurement"
    field_name = "unit"
    description = "The unit of each measurement (a partitioned table)."
    expression = "CASE WHEN mod(value, 2) = 0 THEN 'kg' ELSE 'lb' END"


@register
class MembershipRoles(ExpressionDefinition):
    name = "membership_roles"
    model_label = "examples.Membership"
    field_name = "role"
    description = "Every membership's role (a composite key: refused)."
    expression = "'member'"
