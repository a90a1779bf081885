# Security: the encryption key, the security-group chain and the instances' IAM
# role.
#
#   internet --80/443--> alb_sg --8080--> app_sg --5432--> db_sg
#
# Nothing admits SSH and no key pair exists: operators open a shell with SSM
# Session Manager (`aws ssm start-session --target i-...`).

# --- encryption key ---------------------------------------------------------------

# One customer-managed key for the data at rest this stack owns: database
# storage, its Performance Insights data, the database master secret and the log
# groups. Instance root volumes use the account's EBS default key instead, so
# that Auto Scaling needs no grant on this key to launch instances.
locals {
  # The log groups this stack creates (database.tf, network.tf), as ARN patterns.
  flow_logs_group_name = "/${local.name}/vpc-flow-logs"
  log_group_patterns   = ["/aws/rds/instance/${local.db_identifier}/*", local.flow_logs_group_name]
}

resource "aws_kms_key" "main" {
  description             = "${local.name}: database, secret and log encryption"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersKeyThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        # Only for this stack's log groups: the database's exports and the flow logs.
        Sid       = "CloudWatchLogsEncryptsThisStacksLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${data.aws_region.current.name}.amazonaws.com" }
        Action = [
          "kms:Encrypt*",
          "kms:Decrypt*",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:Describe*",
        ]
        Resource = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = [
              for group in local.log_group_patterns :
              "arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:${group}"
            ]
          }
        }
      },
    ]
  })

  tags = { Name = "${local.name}-data" }
}

resource "aws_kms_alias" "main" {
  name          = "alias/${local.name}-data"
  target_key_id = aws_kms_key.main.key_id
}

# --- security groups --------------------------------------------------------------

locals {
  https_enabled = var.certificate_arn != ""
  alb_ports     = local.https_enabled ? [80, 443] : [80]
  app_port      = 8080
  db_port       = 5432

  alb_ingress = {
    for pair in setproduct(local.alb_ports, var.allowed_cidrs) :
    "${pair[0]}-${pair[1]}" => { port = pair[0], cidr = pair[1] }
  }
}

resource "aws_security_group" "alb" {
  name_prefix = "${local.name}-alb-"
  description = "Load balancer: HTTP/HTTPS from allowed CIDRs, out only to the app port"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${local.name}-alb" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  for_each = local.alb_ingress

  security_group_id = aws_security_group.alb.id
  description       = "Clients to the load balancer on ${each.value.port}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "alb_to_app" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Load balancer to the instances' app port"
  ip_protocol                  = "tcp"
  from_port                    = local.app_port
  to_port                      = local.app_port
  referenced_security_group_id = aws_security_group.app.id
}

resource "aws_security_group" "app" {
  name_prefix = "${local.name}-app-"
  description = "Instances: app port from the load balancer only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${local.name}-app" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "app_from_alb" {
  security_group_id            = aws_security_group.app.id
  description                  = "App port from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.app_port
  to_port                      = local.app_port
  referenced_security_group_id = aws_security_group.alb.id
}

# HTTPS out: SSM Session Manager, Secrets Manager, the release download and the
# OS package repositories. DNS and NTP use the VPC's link-local services, which
# security groups do not filter.
resource "aws_vpc_security_group_egress_rule" "app_https" {
  security_group_id = aws_security_group.app.id
  description       = "HTTPS to AWS APIs, the release artifact and package repositories"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "app_to_db" {
  security_group_id            = aws_security_group.app.id
  description                  = "Postgres on the database"
  ip_protocol                  = "tcp"
  from_port                    = local.db_port
  to_port                      = local.db_port
  referenced_security_group_id = aws_security_group.db.id
}

# No egress rules at all: the database only answers connections.
resource "aws_security_group" "db" {
  name_prefix = "${local.name}-db-"
  description = "Database: Postgres from the instances only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${local.name}-db" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_app" {
  security_group_id            = aws_security_group.db.id
  description                  = "Postgres from the instances"
  ip_protocol                  = "tcp"
  from_port                    = local.db_port
  to_port                      = local.db_port
  referenced_security_group_id = aws_security_group.app.id
}

# --- instance role ----------------------------------------------------------------

resource "aws_iam_role" "app" {
  name_prefix = "${local.name}-app-"
  description = "Instances of ${local.name}: SSM Session Manager and the database secret"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

# Everything an instance may do, in one inline policy: no AWS-managed policy (the usual
# AmazonSSMManagedInstanceCore also reads every SSM parameter and more).
#   - Session Manager: the SSM agent registers its own instance, opens the session
#     channels (Session Manager's documented minimum) and polls its message endpoint
#     (the channel and message actions have no resource-level permissions);
#   - exactly the RDS-managed database secret, and the key that protects it only when
#     Secrets Manager uses it on the role's behalf.
# The AMI parameter is read by Terraform, not by the instances.
resource "aws_iam_role_policy" "app" {
  name = "instance"
  role = aws_iam_role.app.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "SessionManagerRegistration"
        Effect   = "Allow"
        Action   = "ssm:UpdateInstanceInformation"
        Resource = "arn:${data.aws_partition.current.partition}:ec2:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:instance/*"
      },
      {
        Sid    = "SessionManagerChannels"
        Effect = "Allow"
        Action = [
          "ssmmessages:CreateControlChannel",
          "ssmmessages:CreateDataChannel",
          "ssmmessages:OpenControlChannel",
          "ssmmessages:OpenDataChannel",
          "ec2messages:AcknowledgeMessage",
          "ec2messages:DeleteMessage",
          "ec2messages:FailMessage",
          "ec2messages:GetEndpoint",
          "ec2messages:GetMessages",
          "ec2messages:SendReply",
        ]
        Resource = "*"
      },
      {
        Sid      = "ReadDatabaseSecret"
        Effect   = "Allow"
        Action   = "secretsmanager:GetSecretValue"
        Resource = local.db_secret_arn
      },
      {
        Sid      = "DecryptDatabaseSecret"
        Effect   = "Allow"
        Action   = "kms:Decrypt"
        Resource = aws_kms_key.main.arn
        Condition = {
          StringEquals = {
            "kms:ViaService" = "secretsmanager.${data.aws_region.current.name}.amazonaws.com"
          }
        }
      },
    ]
  })
}

resource "aws_iam_instance_profile" "app" {
  name_prefix = "${local.name}-app-"
  role        = aws_iam_role.app.name
}
