# Secure defaults of the stack, checked against a mocked AWS provider: no
# credentials or network needed. `command = apply` (still mocked) is used where
# an assertion needs IDs that are only known after creation.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = {
      names = ["us-east-1a", "us-east-1b", "us-east-1c"]
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_region" {
    defaults = {
      name = "us-east-1"
    }
  }

  mock_data "aws_ssm_parameter" {
    defaults = {
      insecure_value = "ami-0123456789abcdef0"
      value          = "ami-0123456789abcdef0"
    }
  }

  mock_data "aws_default_tags" {
    defaults = {
      tags = { Project = "shortener" }
    }
  }

  mock_resource "aws_kms_key" {
    defaults = {
      arn    = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
      key_id = "11111111-2222-3333-4444-555555555555"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/shortener-mock"
    }
  }

  mock_resource "aws_iam_instance_profile" {
    defaults = {
      arn = "arn:aws:iam::123456789012:instance-profile/shortener-mock"
    }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:us-east-1:123456789012:log-group:mock"
    }
  }

  mock_resource "aws_lb" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/shortener-alb/0123456789abcdef"
      arn_suffix = "app/shortener-alb/0123456789abcdef"
      dns_name   = "shortener-alb-123456789.us-east-1.elb.amazonaws.com"
    }
  }

  mock_resource "aws_lb_target_group" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shorte/0123456789abcdef"
      arn_suffix = "targetgroup/shorte/0123456789abcdef"
    }
  }

  mock_resource "aws_launch_template" {
    defaults = {
      id             = "lt-0123456789abcdef0"
      latest_version = 1
    }
  }

  mock_resource "aws_db_instance" {
    defaults = {
      address  = "shortener-db.abcdefghijkl.us-east-1.rds.amazonaws.com"
      endpoint = "shortener-db.abcdefghijkl.us-east-1.rds.amazonaws.com:5432"
      master_user_secret = [{
        kms_key_id    = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
        secret_arn    = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-mock-AbCdEf"
        secret_status = "active"
      }]
    }
  }

  mock_resource "aws_autoscaling_group" {
    defaults = {
      arn = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:mock:autoScalingGroupName/shortener-app-mock"
    }
  }
}

variables {
  artifact_url    = "https://releases.example.com/shortener-1.0.0-linux-x86_64.tar.gz"
  artifact_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
}

run "secure_defaults" {
  command = apply

  # --- instances --------------------------------------------------------------
  assert {
    condition     = aws_launch_template.app.metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required."
  }

  assert {
    condition     = aws_launch_template.app.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "The IMDS hop limit must be 1."
  }

  assert {
    condition     = aws_launch_template.app.block_device_mappings[0].ebs[0].encrypted == "true" && aws_launch_template.app.block_device_mappings[0].ebs[0].volume_type == "gp3"
    error_message = "The root volume must be encrypted gp3."
  }

  assert {
    condition     = aws_launch_template.app.monitoring[0].enabled
    error_message = "Detailed monitoring must be on."
  }

  assert {
    condition     = aws_launch_template.app.key_name == null || aws_launch_template.app.key_name == ""
    error_message = "No key pair: operators use SSM Session Manager."
  }

  assert {
    condition     = tostring(aws_launch_template.app.network_interfaces[0].associate_public_ip_address) == "false"
    error_message = "Instances must not get public addresses."
  }

  assert {
    condition     = aws_launch_template.app.image_id == "ami-0123456789abcdef0"
    error_message = "The AMI must come from the SSM parameter."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.app.user_data), "SHORTENER_SHUTDOWN_TIMEOUT=\"$${DRAIN_SECONDS}s\"") && strcontains(base64decode(aws_launch_template.app.user_data), "readonly DRAIN_SECONDS='30'")
    error_message = "user_data must pass the drain time to the service."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.app.user_data), "readonly ARTIFACT_SHA256='0000000000000000000000000000000000000000000000000000000000000000'")
    error_message = "user_data must verify the artifact's checksum."
  }

  assert {
    condition     = !strcontains(lower(base64decode(aws_launch_template.app.user_data)), "password=")
    error_message = "user_data must not carry a password."
  }

  assert {
    condition = (
      strcontains(base64decode(aws_launch_template.app.user_data), "sslmode=verify-full&sslrootcert=") &&
      !strcontains(base64decode(aws_launch_template.app.user_data), "sslmode=require") &&
      strcontains(base64decode(aws_launch_template.app.user_data), "readonly DB_CA_BUNDLE_URL='https://truststore.pki.rds.amazonaws.com/us-east-1/us-east-1-bundle.pem'")
    )
    error_message = "The instances must verify the database's certificate against the region's RDS CA bundle."
  }

  # The ALB marks a target unhealthy after 3 failed checks 10 s apart: the service
  # drains for one interval more; it keeps idle connections 5 s longer than the ALB.
  assert {
    condition     = strcontains(base64decode(aws_launch_template.app.user_data), "readonly DRAIN_DELAY_SECONDS='40'") && aws_lb_target_group.app.health_check[0].interval * aws_lb_target_group.app.health_check[0].unhealthy_threshold < 40
    error_message = "The drain delay must be longer than health-check interval x unhealthy threshold."
  }

  assert {
    condition     = aws_lb.main.idle_timeout == 60 && strcontains(base64decode(aws_launch_template.app.user_data), "readonly HEADER_READ_TIMEOUT_SECONDS='65'") && strcontains(base64decode(aws_launch_template.app.user_data), "SHORTENER_HEADER_READ_TIMEOUT=")
    error_message = "The service must keep idle connections open longer than the ALB's idle timeout."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.app.user_data), "readonly AVAILABILITY_ZONES='us-east-1a us-east-1b'") && strcontains(base64decode(aws_launch_template.app.user_data), "readonly RESTART_SLOT_SECONDS='160'")
    error_message = "Rotation restarts must go one zone at a time, a slot of drain delay + drain_seconds + 2 healthy checks + one poll apart."
  }

  # --- instance role: Session Manager plus exactly the database secret -----------
  assert {
    condition     = length(jsondecode(aws_iam_role_policy.app.policy).Statement) == 4 && alltrue([for st in jsondecode(aws_iam_role_policy.app.policy).Statement : st.Effect == "Allow" && !can(st.NotAction) && !can(st.NotResource)])
    error_message = "The instance policy must have exactly its four Allow statements."
  }

  assert {
    condition = alltrue(flatten([
      for st in jsondecode(aws_iam_role_policy.app.policy).Statement : [for a in flatten([st.Action]) : !strcontains(a, "*")]
    ]))
    error_message = "No action of the instance policy may be a wildcard."
  }

  assert {
    condition = (
      { for st in jsondecode(aws_iam_role_policy.app.policy).Statement : st.Sid => st }["SessionManagerRegistration"].Action == "ssm:UpdateInstanceInformation" &&
      { for st in jsondecode(aws_iam_role_policy.app.policy).Statement : st.Sid => st }["SessionManagerRegistration"].Resource == "arn:aws:ec2:us-east-1:123456789012:instance/*"
    )
    error_message = "The SSM agent may register its instance, nothing else of SSM."
  }

  assert {
    condition = toset({ for st in jsondecode(aws_iam_role_policy.app.policy).Statement : st.Sid => st }["SessionManagerChannels"].Action) == toset([
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
    ])
    error_message = "Session Manager needs exactly the agent's channel and message actions."
  }

  assert {
    condition = (
      { for st in jsondecode(aws_iam_role_policy.app.policy).Statement : st.Sid => st }["ReadDatabaseSecret"].Action == "secretsmanager:GetSecretValue" &&
      { for st in jsondecode(aws_iam_role_policy.app.policy).Statement : st.Sid => st }["ReadDatabaseSecret"].Resource == aws_db_instance.main.master_user_secret[0].secret_arn
    )
    error_message = "The instance role may only read the value of the RDS-managed secret."
  }

  assert {
    condition = (
      { for st in jsondecode(aws_iam_role_policy.app.policy).Statement : st.Sid => st }["DecryptDatabaseSecret"].Action == "kms:Decrypt" &&
      { for st in jsondecode(aws_iam_role_policy.app.policy).Statement : st.Sid => st }["DecryptDatabaseSecret"].Resource == aws_kms_key.main.arn &&
      { for st in jsondecode(aws_iam_role_policy.app.policy).Statement : st.Sid => st }["DecryptDatabaseSecret"].Condition.StringEquals["kms:ViaService"] == "secretsmanager.us-east-1.amazonaws.com"
    )
    error_message = "The instance role may decrypt with the stack's key only through Secrets Manager."
  }

  # --- encryption key -----------------------------------------------------------
  assert {
    condition = toset(jsondecode(aws_kms_key.main.policy).Statement[1].Condition.ArnLike["kms:EncryptionContext:aws:logs:arn"]) == toset([
      "arn:aws:logs:us-east-1:123456789012:log-group:/aws/rds/instance/shortener-prod-db/*",
      "arn:aws:logs:us-east-1:123456789012:log-group:/shortener-prod/vpc-flow-logs",
    ])
    error_message = "CloudWatch Logs may use the key for this stack's log groups only."
  }

  # --- names: name-environment, so environments in one account do not collide -----
  assert {
    condition     = aws_lb.main.name == "shortener-prod-alb" && aws_db_instance.main.identifier == "shortener-prod-db" && aws_kms_alias.main.name == "alias/shortener-prod-data" && aws_cloudwatch_log_group.flow_logs[0].name == "/shortener-prod/vpc-flow-logs"
    error_message = "Fixed names must include the environment."
  }

  # --- Auto Scaling -------------------------------------------------------------
  assert {
    condition     = aws_autoscaling_group.app.min_size >= 2 && length(aws_autoscaling_group.app.vpc_zone_identifier) == 2
    error_message = "The group must keep at least two instances over two subnets."
  }

  assert {
    condition     = toset(aws_autoscaling_group.app.vpc_zone_identifier) == toset(aws_subnet.app[*].id) && aws_subnet.app[0].availability_zone != aws_subnet.app[1].availability_zone
    error_message = "The group must use the two app subnets, in different zones."
  }

  assert {
    condition     = aws_autoscaling_group.app.health_check_type == "ELB" && aws_autoscaling_group.app.health_check_grace_period > 0
    error_message = "The group must replace instances that fail the load balancer's health check, after a grace period."
  }

  assert {
    condition     = aws_autoscaling_group.app.instance_refresh[0].strategy == "Rolling" && aws_autoscaling_group.app.instance_refresh[0].preferences[0].min_healthy_percentage >= 50
    error_message = "Rolling instance refresh keeping at least half the capacity."
  }

  assert {
    condition     = aws_autoscaling_group.app.launch_template[0].version == tostring(aws_launch_template.app.latest_version)
    error_message = "The group must follow the latest template version, so that a new release triggers a refresh."
  }

  assert {
    condition     = aws_autoscaling_policy.cpu.policy_type == "TargetTrackingScaling"
    error_message = "A target-tracking scaling policy must exist."
  }

  assert {
    condition     = !aws_autoscaling_group.app.instance_refresh[0].preferences[0].auto_rollback && aws_autoscaling_group.app.instance_refresh[0].preferences[0].max_healthy_percentage == 200
    error_message = "No auto_rollback (it would relaunch the new version; see compute.tf); replacements launch before old instances stop."
  }

  # --- load balancer ------------------------------------------------------------
  assert {
    condition     = aws_lb.main.drop_invalid_header_fields && !aws_lb.main.internal
    error_message = "The ALB must be public and drop invalid header fields."
  }

  assert {
    condition     = aws_lb_target_group.app.health_check[0].path == "/readyz" && aws_lb_target_group.app.health_check[0].matcher == "200"
    error_message = "The health check must be GET /readyz expecting 200."
  }

  assert {
    condition     = aws_lb_target_group.app.port == 8080 && aws_lb_target_group.app.protocol == "HTTP"
    error_message = "The target group must use HTTP on 8080."
  }

  assert {
    condition     = aws_lb_target_group.app.deregistration_delay == "30"
    error_message = "The deregistration delay must equal drain_seconds (30)."
  }

  assert {
    condition     = length(aws_lb_listener.https) == 0 && aws_lb_listener.http.default_action[0].type == "forward"
    error_message = "Without a certificate: no HTTPS listener, HTTP forwards."
  }

  # --- security groups: the chain ------------------------------------------------
  assert {
    condition     = aws_vpc_security_group_ingress_rule.app_from_alb.referenced_security_group_id == aws_security_group.alb.id && aws_vpc_security_group_ingress_rule.app_from_alb.cidr_ipv4 == null
    error_message = "Instances must admit traffic only from the ALB's security group."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.app_from_alb.from_port == 8080 && aws_vpc_security_group_ingress_rule.app_from_alb.to_port == 8080
    error_message = "Instances must admit only the app port."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.db_from_app.referenced_security_group_id == aws_security_group.app.id && aws_vpc_security_group_ingress_rule.db_from_app.cidr_ipv4 == null
    error_message = "The database must admit traffic only from the instances' security group."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.db_from_app.from_port == 5432 && aws_vpc_security_group_ingress_rule.db_from_app.to_port == 5432
    error_message = "The database must admit only 5432."
  }

  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.alb_http) == ["80-0.0.0.0/0"]
    error_message = "Without a certificate the ALB admits only port 80, from allowed_cidrs."
  }

  assert {
    condition = alltrue([
      for r in concat(values(aws_vpc_security_group_ingress_rule.alb_http), [aws_vpc_security_group_ingress_rule.app_from_alb, aws_vpc_security_group_ingress_rule.db_from_app]) :
      r.ip_protocol == "tcp" && !(r.from_port <= 22 && r.to_port >= 22)
    ])
    error_message = "No ingress rule may admit SSH (22) or all protocols."
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.alb_to_app.referenced_security_group_id == aws_security_group.app.id
    error_message = "The ALB may send only to the instances."
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.app_https.from_port == 443 && aws_vpc_security_group_egress_rule.app_to_db.referenced_security_group_id == aws_security_group.db.id
    error_message = "Instances may send only HTTPS out and Postgres to the database."
  }

  # --- database -----------------------------------------------------------------
  assert {
    condition     = !aws_db_instance.main.publicly_accessible && aws_db_instance.main.storage_encrypted
    error_message = "The database must be private and encrypted."
  }

  assert {
    condition     = aws_db_instance.main.manage_master_user_password && aws_db_instance.main.password == null
    error_message = "The master password must be managed by RDS, never set in code."
  }

  assert {
    condition     = contains(["15", "16"], split(".", aws_db_instance.main.engine_version)[0]) && aws_db_instance.main.engine == "postgres"
    error_message = "The database must be PostgreSQL 15 or 16."
  }

  assert {
    condition     = anytrue([for p in aws_db_parameter_group.main.parameter : p.name == "rds.force_ssl" && p.value == "1"])
    error_message = "The parameter group must force TLS."
  }

  assert {
    condition     = aws_db_instance.main.parameter_group_name == aws_db_parameter_group.main.name
    error_message = "The database must use the TLS-only parameter group."
  }

  assert {
    condition     = aws_db_instance.main.deletion_protection && aws_db_instance.main.multi_az && !aws_db_instance.main.skip_final_snapshot
    error_message = "Careful defaults: deletion protection, Multi-AZ and a final snapshot."
  }

  assert {
    condition     = aws_db_instance.main.backup_retention_period >= 1 && aws_db_instance.main.copy_tags_to_snapshot && aws_db_instance.main.auto_minor_version_upgrade
    error_message = "Backups, tags on snapshots and minor upgrades must be on."
  }

  assert {
    condition     = toset(aws_db_subnet_group.main.subnet_ids) == toset(aws_subnet.database[*].id)
    error_message = "The database must live in the database subnets."
  }

  # --- network ------------------------------------------------------------------
  assert {
    condition     = length(aws_route_table.database.route) == 0
    error_message = "The database subnets must have no route out of the VPC."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.app : !s.map_public_ip_on_launch]) && alltrue([for s in aws_subnet.public : !s.map_public_ip_on_launch])
    error_message = "No subnet may hand out public addresses on launch."
  }

  assert {
    condition     = length(aws_nat_gateway.main) == 1 && aws_route.app_nat[0].nat_gateway_id == aws_route.app_nat[1].nat_gateway_id
    error_message = "By default one NAT gateway serves both app subnets."
  }

  # --- monitoring ---------------------------------------------------------------
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.unhealthy_hosts.alarm_actions) == 0 && length(aws_cloudwatch_metric_alarm.db_cpu.alarm_actions) == 0
    error_message = "Without a topic, alarms exist without actions."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.alb_5xx.namespace == "AWS/ApplicationELB" &&
      aws_cloudwatch_metric_alarm.alb_5xx.metric_name == "HTTPCode_ELB_5XX_Count" &&
      aws_cloudwatch_metric_alarm.alb_5xx.dimensions.LoadBalancer == aws_lb.main.arn_suffix &&
      aws_cloudwatch_metric_alarm.alb_5xx.statistic == "Sum" &&
      aws_cloudwatch_metric_alarm.alb_5xx.comparison_operator == "GreaterThanOrEqualToThreshold" &&
      aws_cloudwatch_metric_alarm.alb_5xx.threshold == 10
    )
    error_message = "An alarm must count the load balancer's 5xx responses."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.target_5xx.namespace == "AWS/ApplicationELB" &&
      aws_cloudwatch_metric_alarm.target_5xx.metric_name == "HTTPCode_Target_5XX_Count" &&
      aws_cloudwatch_metric_alarm.target_5xx.dimensions.LoadBalancer == aws_lb.main.arn_suffix
    )
    error_message = "An alarm must count the service's 5xx responses."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.unhealthy_hosts.namespace == "AWS/ApplicationELB" &&
      aws_cloudwatch_metric_alarm.unhealthy_hosts.metric_name == "UnHealthyHostCount" &&
      aws_cloudwatch_metric_alarm.unhealthy_hosts.dimensions.TargetGroup == aws_lb_target_group.app.arn_suffix &&
      aws_cloudwatch_metric_alarm.unhealthy_hosts.dimensions.LoadBalancer == aws_lb.main.arn_suffix &&
      aws_cloudwatch_metric_alarm.unhealthy_hosts.threshold == 1
    )
    error_message = "An alarm must fire when the target group has an unhealthy host."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.db_cpu.namespace == "AWS/RDS" &&
      aws_cloudwatch_metric_alarm.db_cpu.metric_name == "CPUUtilization" &&
      aws_cloudwatch_metric_alarm.db_cpu.dimensions.DBInstanceIdentifier == aws_db_instance.main.identifier &&
      aws_cloudwatch_metric_alarm.db_cpu.comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.db_cpu.threshold == 80
    )
    error_message = "An alarm must watch the database's CPU."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.db_free_storage.namespace == "AWS/RDS" &&
      aws_cloudwatch_metric_alarm.db_free_storage.metric_name == "FreeStorageSpace" &&
      aws_cloudwatch_metric_alarm.db_free_storage.dimensions.DBInstanceIdentifier == aws_db_instance.main.identifier &&
      aws_cloudwatch_metric_alarm.db_free_storage.comparison_operator == "LessThanThreshold" &&
      aws_cloudwatch_metric_alarm.db_free_storage.threshold == 2147483648
    )
    error_message = "An alarm must fire below 10% (2 GiB) free database storage."
  }

  # --- outputs ------------------------------------------------------------------
  assert {
    condition     = output.service_url == "http://shortener-alb-123456789.us-east-1.elb.amazonaws.com"
    error_message = "Without a certificate the service URL is the ALB's HTTP address."
  }
}

run "https_with_certificate" {
  command = apply

  variables {
    certificate_arn     = "arn:aws:acm:us-east-1:123456789012:certificate/12345678-90ab-cdef-1234-567890abcdef"
    allowed_cidrs       = ["203.0.113.0/24", "198.51.100.0/24"]
    drain_seconds       = 45
    nat_gateway_per_az  = true
    alarm_sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:ops"
    alb_idle_timeout    = 120
    environment         = "staging"
    db_ca_bundle_url    = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
  }

  assert {
    condition     = aws_lb.main.idle_timeout == 120 && strcontains(base64decode(aws_launch_template.app.user_data), "readonly HEADER_READ_TIMEOUT_SECONDS='125'")
    error_message = "The service's idle limit must follow the ALB's idle timeout."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.app.user_data), "readonly DB_CA_BUNDLE_URL='https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem'")
    error_message = "db_ca_bundle_url must reach the instances."
  }

  assert {
    condition     = aws_lb.main.name == "shortener-staging-alb" && aws_db_instance.main.identifier == "shortener-staging-db"
    error_message = "Another environment gets other names."
  }

  assert {
    condition     = length(aws_lb_listener.https) == 1 && aws_lb_listener.https[0].ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06" && aws_lb_listener.https[0].protocol == "HTTPS"
    error_message = "With a certificate there must be an HTTPS listener with a TLS 1.3 policy."
  }

  assert {
    condition     = aws_lb_listener.https[0].certificate_arn == var.certificate_arn && aws_lb_listener.https[0].default_action[0].type == "forward"
    error_message = "The HTTPS listener must use the certificate and forward to the service."
  }

  assert {
    condition = (
      aws_lb_listener.http.default_action[0].type == "redirect" &&
      aws_lb_listener.http.default_action[0].redirect[0].protocol == "HTTPS" &&
      aws_lb_listener.http.default_action[0].redirect[0].port == "443" &&
      aws_lb_listener.http.default_action[0].redirect[0].status_code == "HTTP_301"
    )
    error_message = "With a certificate, HTTP must redirect to HTTPS."
  }

  assert {
    condition     = toset(keys(aws_vpc_security_group_ingress_rule.alb_http)) == toset(["80-203.0.113.0/24", "80-198.51.100.0/24", "443-203.0.113.0/24", "443-198.51.100.0/24"])
    error_message = "The ALB must admit 80 and 443 from exactly the allowed CIDRs."
  }

  assert {
    condition     = aws_lb_target_group.app.deregistration_delay == "45" && strcontains(base64decode(aws_launch_template.app.user_data), "readonly DRAIN_SECONDS='45'")
    error_message = "drain_seconds must reach both the target group and the service."
  }

  assert {
    condition     = output.service_url == "https://shortener-alb-123456789.us-east-1.elb.amazonaws.com"
    error_message = "With a certificate the service URL is HTTPS."
  }

  assert {
    condition     = length(aws_nat_gateway.main) == 2 && aws_route.app_nat[0].nat_gateway_id != aws_route.app_nat[1].nat_gateway_id
    error_message = "Per-zone NAT: each app subnet uses its own gateway."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.alb_5xx.alarm_actions == toset(["arn:aws:sns:us-east-1:123456789012:ops"])
    error_message = "Alarms must notify the given topic."
  }
}

run "operator_overrides" {
  command = plan

  variables {
    deletion_protection          = false
    multi_az                     = false
    skip_final_snapshot          = true
    performance_insights_enabled = false
    enhanced_monitoring_interval = 0
    flow_logs_enabled            = false
    availability_zones           = ["us-east-1c", "us-east-1d"]
  }

  assert {
    condition     = !aws_db_instance.main.deletion_protection && !aws_db_instance.main.multi_az && aws_db_instance.main.skip_final_snapshot
    error_message = "The careful defaults must be switchable for throwaway environments."
  }

  assert {
    condition     = length(aws_iam_role.rds_monitoring) == 0 && aws_db_instance.main.monitoring_interval == 0
    error_message = "Enhanced monitoring off: no monitoring role."
  }

  assert {
    condition     = length(aws_flow_log.main) == 0
    error_message = "Flow logs can be turned off."
  }

  assert {
    condition     = aws_subnet.app[0].availability_zone == "us-east-1c" && aws_subnet.app[1].availability_zone == "us-east-1d"
    error_message = "Pinned zones must be used."
  }
}

# --- variable validation ---------------------------------------------------------

run "rejects_single_instance" {
  command = plan
  variables {
    min_size = 1
  }
  expect_failures = [var.min_size]
}

run "rejects_max_below_min" {
  command = plan
  variables {
    min_size = 4
    max_size = 3
  }
  expect_failures = [var.max_size]
}

run "rejects_bad_cidr" {
  command = plan
  variables {
    allowed_cidrs = ["10.0.0.0/33"]
  }
  expect_failures = [var.allowed_cidrs]
}

run "rejects_empty_cidr_list" {
  command = plan
  variables {
    allowed_cidrs = []
  }
  expect_failures = [var.allowed_cidrs]
}

run "rejects_bad_vpc_cidr" {
  command = plan
  variables {
    vpc_cidr = "10.0.0.0/8"
  }
  expect_failures = [var.vpc_cidr]
}

run "rejects_short_sha256" {
  command = plan
  variables {
    artifact_sha256 = "abc123"
  }
  expect_failures = [var.artifact_sha256]
}

run "rejects_non_hex_sha256" {
  command = plan
  variables {
    artifact_sha256 = "zz00000000000000000000000000000000000000000000000000000000000000"
  }
  expect_failures = [var.artifact_sha256]
}

run "rejects_plain_http_artifact" {
  command = plan
  variables {
    artifact_url = "http://releases.example.com/shortener.tar.gz"
  }
  expect_failures = [var.artifact_url]
}

run "rejects_quote_in_artifact_url" {
  command = plan
  variables {
    artifact_url = "https://releases.example.com/x'; rm -rf /'"
  }
  expect_failures = [var.artifact_url]
}

run "rejects_short_drain" {
  command = plan
  variables {
    drain_seconds = 2
  }
  expect_failures = [var.drain_seconds]
}

run "rejects_long_drain" {
  command = plan
  variables {
    drain_seconds = 3600
  }
  expect_failures = [var.drain_seconds]
}

run "rejects_old_postgres" {
  command = plan
  variables {
    db_engine_version = "13.4"
  }
  expect_failures = [var.db_engine_version]
}

run "rejects_name_and_environment_too_long" {
  command = plan
  variables {
    name        = "shortener-service"
    environment = "production-eu"
  }
  expect_failures = [var.environment]
}

run "rejects_environment_ending_in_hyphen" {
  command = plan
  variables {
    environment = "prod-"
  }
  expect_failures = [var.environment]
}

run "rejects_bad_idle_timeout" {
  command = plan
  variables {
    alb_idle_timeout = 0
  }
  expect_failures = [var.alb_idle_timeout]
}

run "rejects_plain_http_ca_bundle" {
  command = plan
  variables {
    db_ca_bundle_url = "http://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
  }
  expect_failures = [var.db_ca_bundle_url]
}

run "rejects_bad_certificate_arn" {
  command = plan
  variables {
    certificate_arn = "not-an-arn"
  }
  expect_failures = [var.certificate_arn]
}
