# Database: RDS for PostgreSQL in the isolated database subnets.
#
# The master password is generated and rotated by RDS and kept in Secrets
# Manager (manage_master_user_password); Terraform only ever sees the secret's
# ARN. Connections without TLS are refused (rds.force_ssl).

locals {
  db_major      = split(".", var.db_engine_version)[0]
  db_identifier = "${local.name}-db"
  db_secret_arn = aws_db_instance.main.master_user_secret[0].secret_arn

  # The CA bundle the instances verify the database's certificate against.
  db_ca_bundle_url = (var.db_ca_bundle_url != "" ? var.db_ca_bundle_url :
  "https://truststore.pki.rds.amazonaws.com/${data.aws_region.current.name}/${data.aws_region.current.name}-bundle.pem")
}

resource "aws_db_subnet_group" "main" {
  name_prefix = "${local.name}-db-"
  description = "${local.name}: isolated database subnets"
  subnet_ids  = aws_subnet.database[*].id

  tags = { Name = "${local.name}-db" }
}

resource "aws_db_parameter_group" "main" {
  name_prefix = "${local.name}-pg${local.db_major}-"
  family      = "postgres${local.db_major}"
  description = "${local.name}: TLS only, DDL and slow-query logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Schema changes are logged; data statements (which carry link targets) are
  # not, except when slower than the threshold.
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.db_log_min_duration_ms)
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  tags = { Name = "${local.name}-pg${local.db_major}" }

  lifecycle {
    create_before_destroy = true
  }
}

# Created before the instance so that the exported logs are retained and
# encrypted as configured, rather than in groups RDS would create unencrypted
# and kept forever.
resource "aws_cloudwatch_log_group" "db" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${local.db_identifier}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_iam_role" "rds_monitoring" {
  count = var.enhanced_monitoring_interval > 0 ? 1 : 0

  name_prefix = "${local.name}-rds-mon-"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id }
      }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = var.enhanced_monitoring_interval > 0 ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "main" {
  identifier     = local.db_identifier
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class
  port           = local.db_port

  # Standard support only: a major version that leaves it must be upgraded
  # rather than silently billed for extended support.
  engine_lifecycle_support = "open-source-rds-extended-support-disabled"

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.main.arn

  db_name                       = var.db_name
  username                      = var.db_username
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.main.key_id

  iam_database_authentication_enabled = var.iam_database_authentication_enabled

  db_subnet_group_name   = aws_db_subnet_group.main.name
  vpc_security_group_ids = [aws_security_group.db.id]
  parameter_group_name   = aws_db_parameter_group.main.name
  publicly_accessible    = false
  multi_az               = var.multi_az

  backup_retention_period  = var.backup_retention_days
  backup_window            = "03:00-04:00"
  maintenance_window       = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot    = true
  delete_automated_backups = false

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = var.db_apply_immediately

  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = var.skip_final_snapshot
  final_snapshot_identifier = "${local.db_identifier}-final-${formatdate("YYYYMMDDhhmmss", timestamp())}"

  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  performance_insights_enabled          = var.performance_insights_enabled
  performance_insights_kms_key_id       = var.performance_insights_enabled ? aws_kms_key.main.arn : null
  performance_insights_retention_period = var.performance_insights_enabled ? 7 : null

  monitoring_interval = var.enhanced_monitoring_interval
  monitoring_role_arn = var.enhanced_monitoring_interval > 0 ? aws_iam_role.rds_monitoring[0].arn : null

  tags = { Name = local.db_identifier }

  depends_on = [
    aws_cloudwatch_log_group.db,
    aws_iam_role_policy_attachment.rds_monitoring,
  ]

  lifecycle {
    # The snapshot name is fixed when the database is created (timestamp() would
    # otherwise change it on every plan) and used when it is finally destroyed.
    ignore_changes = [final_snapshot_identifier]
  }
}
