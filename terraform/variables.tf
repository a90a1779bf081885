# Inputs of the stack. Every variable is typed, described and, where a bad
# value would only fail late inside AWS, validated here.

# --- naming and placement -----------------------------------------------------

variable "name" {
  description = "Name of the service; with environment it prefixes every resource name (name-environment-...)."
  type        = string
  default     = "shortener"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name))
    error_message = "name must be 3-22 characters of lower case letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment (for example prod or staging): part of every resource name, so that environments in one account and region do not collide, and a tag."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", var.environment))
    error_message = "environment must be lower case letters, digits and hyphens, starting and ending with a letter or digit."
  }

  # The load balancer's name (name-environment-alb) may have 32 characters, and IAM name
  # prefixes (name-environment-flow-logs-) 38.
  validation {
    condition     = length("${var.name}-${var.environment}") <= 27
    error_message = "name and environment together must have at most 26 characters (the load balancer's name is name-environment-alb, at most 32)."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, for example us-east-1."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource through the provider's default_tags."
  type        = map(string)
  default     = {}
}

# --- network ------------------------------------------------------------------

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC (/16 to /24). Six subnets (public, app, database in two zones) are carved from it."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && can(regex("^[0-9.]+/(1[6-9]|2[0-4])$", var.vpc_cidr))
    error_message = "vpc_cidr must be a valid IPv4 CIDR block with a prefix length between /16 and /24."
  }
}

variable "availability_zones" {
  description = "Two availability zone names to use, for example [\"eu-west-1a\", \"eu-west-1b\"]. Empty: the first two available zones of the region, in name order."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) == 2 && length(distinct(var.availability_zones)) == 2)
    error_message = "availability_zones must be empty or name two different zones."
  }
}

variable "nat_gateway_per_az" {
  description = "true: one NAT gateway per availability zone (survives the loss of a zone, costs twice). false: a single NAT gateway shared by both app subnets."
  type        = bool
  default     = false
}

variable "allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the load balancer on ports 80 and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c))])
    error_message = "allowed_cidrs must be a non-empty list of valid IPv4 CIDR blocks, for example [\"203.0.113.0/24\"]."
  }
}

variable "flow_logs_enabled" {
  description = "Record VPC flow logs (rejected and accepted traffic) to an encrypted CloudWatch log group."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups this stack creates (VPC flow logs, database logs)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, ...)."
  }
}

# --- load balancer ------------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate ARN for the HTTPS listener. Empty: HTTP only (port 80 forwards). Set: port 443 serves HTTPS and port 80 redirects to it."
  type        = string
  default     = ""

  validation {
    condition     = var.certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.certificate_arn))
    error_message = "certificate_arn must be empty or an ACM certificate ARN."
  }
}

variable "ssl_policy" {
  description = "TLS security policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = startswith(var.ssl_policy, "ELBSecurityPolicy-TLS13-") || startswith(var.ssl_policy, "ELBSecurityPolicy-FS-1-2-")
    error_message = "ssl_policy must be a TLS 1.2+ policy (ELBSecurityPolicy-TLS13-* or ELBSecurityPolicy-FS-1-2-*)."
  }
}

variable "public_url" {
  description = "Public base URL of the service (for example https://sho.rt), passed to the service as SHORTENER_PUBLIC_URL. Empty: derived from the load balancer's DNS name."
  type        = string
  default     = ""

  validation {
    condition     = var.public_url == "" || can(regex("^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", var.public_url))
    error_message = "public_url must be empty or a scheme and host without a path or trailing slash, for example https://sho.rt."
  }
}

variable "access_logs_bucket" {
  description = "Name of an existing S3 bucket (with the load balancer log-delivery policy) for ALB access logs. Empty: access logs off."
  type        = string
  default     = ""

  validation {
    condition     = var.access_logs_bucket == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.access_logs_bucket))
    error_message = "access_logs_bucket must be empty or a valid S3 bucket name."
  }
}

variable "web_acl_arn" {
  description = "ARN of an existing WAFv2 web ACL (REGIONAL scope) to associate with the load balancer. Empty: no WAF."
  type        = string
  default     = ""

  validation {
    condition     = var.web_acl_arn == "" || can(regex("^arn:aws[a-z-]*:wafv2:", var.web_acl_arn))
    error_message = "web_acl_arn must be empty or a WAFv2 web ACL ARN."
  }
}

variable "alb_idle_timeout" {
  description = "Seconds the load balancer keeps an idle connection open (to clients and to instances). The service keeps idle connections 5 s longer (SHORTENER_HEADER_READ_TIMEOUT), so the load balancer never reuses one the service has closed."
  type        = number
  default     = 60

  validation {
    condition     = var.alb_idle_timeout >= 1 && var.alb_idle_timeout <= 4000 && floor(var.alb_idle_timeout) == var.alb_idle_timeout
    error_message = "alb_idle_timeout must be a whole number of seconds between 1 and 4000."
  }
}

variable "drain_seconds" {
  description = "Seconds a stopping instance keeps serving in-flight requests. Used as the target group's deregistration delay and passed to the service as SHORTENER_SHUTDOWN_TIMEOUT."
  type        = number
  default     = 30

  validation {
    condition     = var.drain_seconds >= 5 && var.drain_seconds <= 300 && floor(var.drain_seconds) == var.drain_seconds
    error_message = "drain_seconds must be a whole number between 5 and 300."
  }
}

# --- compute ------------------------------------------------------------------

variable "artifact_url" {
  description = "HTTPS URL of the release tarball (contains `shortener` and `scripts/run.sh`). Changing it rolls the fleet."
  type        = string

  validation {
    condition     = can(regex("^https://[^[:space:]'\"\\\\`$]+$", var.artifact_url))
    error_message = "artifact_url must be an https:// URL without spaces, quotes, backslashes, backticks or dollar signs."
  }
}

variable "artifact_sha256" {
  description = "SHA-256 of the release tarball as 64 hex characters; instances refuse to start a tarball that does not match."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-fA-F]{64}$", var.artifact_sha256))
    error_message = "artifact_sha256 must be exactly 64 hexadecimal characters."
  }
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter holding the AMI ID (Amazon Linux 2023). The newest image is picked up on each apply."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

  validation {
    condition     = startswith(var.ami_ssm_parameter, "/aws/service/ami-amazon-linux-latest/al2023-ami-")
    error_message = "ami_ssm_parameter must name an Amazon Linux 2023 public parameter."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the application servers (must match the AMI's architecture)."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like an EC2 instance type, for example t3.small."
  }
}

variable "root_volume_size" {
  description = "Size of each instance's encrypted gp3 root volume in GiB."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 200
    error_message = "root_volume_size must be between 8 and 200 GiB."
  }
}

variable "min_size" {
  description = "Minimum number of instances (at least 2, spread over two zones)."
  type        = number
  default     = 2

  validation {
    condition     = var.min_size >= 2 && floor(var.min_size) == var.min_size
    error_message = "min_size must be a whole number of at least 2, so that one instance survives the loss of a zone."
  }
}

variable "max_size" {
  description = "Maximum number of instances the scaling policy may reach."
  type        = number
  default     = 6

  validation {
    condition     = var.max_size >= var.min_size && var.max_size <= 100 && floor(var.max_size) == var.max_size
    error_message = "max_size must be a whole number, at least min_size and at most 100."
  }
}

variable "health_check_grace_period" {
  description = "Seconds after launch before the Auto Scaling group acts on load balancer health checks (boot, download, start)."
  type        = number
  default     = 300

  validation {
    condition     = var.health_check_grace_period >= 60 && var.health_check_grace_period <= 1800
    error_message = "health_check_grace_period must be between 60 and 1800 seconds."
  }
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation the target-tracking policy keeps the group at."
  type        = number
  default     = 50

  validation {
    condition     = var.cpu_target_percent >= 10 && var.cpu_target_percent <= 90
    error_message = "cpu_target_percent must be between 10 and 90."
  }
}

variable "instance_refresh_min_healthy_percentage" {
  description = "Share of capacity kept in service during a rolling instance refresh (replacements are launched before old instances stop)."
  type        = number
  default     = 100

  validation {
    condition     = var.instance_refresh_min_healthy_percentage >= 50 && var.instance_refresh_min_healthy_percentage <= 100
    error_message = "instance_refresh_min_healthy_percentage must be between 50 and 100."
  }
}

# --- database -----------------------------------------------------------------

variable "db_engine_version" {
  description = "PostgreSQL version: a major (\"16\") follows AWS's default minor, or a full version (\"16.4\"). Minor upgrades are applied automatically."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^1[56](\\.[0-9]+)?$", var.db_engine_version))
    error_message = "db_engine_version must be PostgreSQL 15 or 16, for example \"16\" or \"16.4\"."
  }
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.small"

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS instance class, for example db.t4g.small."
  }
}

variable "db_allocated_storage" {
  description = "Initial database storage in GiB (gp3)."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage >= 20 && var.db_allocated_storage <= 65536
    error_message = "db_allocated_storage must be between 20 and 65536 GiB."
  }
}

variable "db_max_allocated_storage" {
  description = "Upper bound for storage autoscaling in GiB; equal to db_allocated_storage turns autoscaling off."
  type        = number
  default     = 100

  validation {
    condition     = var.db_max_allocated_storage >= var.db_allocated_storage && var.db_max_allocated_storage <= 65536
    error_message = "db_max_allocated_storage must be at least db_allocated_storage and at most 65536."
  }
}

variable "db_name" {
  description = "Name of the database the service uses."
  type        = string
  default     = "shortener"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must start with a letter and contain only lower case letters, digits and underscores (at most 63)."
  }
}

variable "db_username" {
  description = "Master user name. Its password is generated and kept by RDS in Secrets Manager; it never appears in Terraform."
  type        = string
  default     = "shortener"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_username)) && !contains(["postgres", "admin", "rdsadmin", "root"], var.db_username)
    error_message = "db_username must start with a letter, use lower case letters, digits and underscores, and not be a reserved name."
  }
}

variable "db_ca_bundle_url" {
  description = "HTTPS URL of the certificate bundle the instances verify the database's TLS certificate against (sslmode=verify-full), fetched at every boot. Empty: the region's RDS bundle, https://truststore.pki.rds.amazonaws.com/REGION/REGION-bundle.pem (the global bundle is .../global/global-bundle.pem)."
  type        = string
  default     = ""

  validation {
    condition     = var.db_ca_bundle_url == "" || can(regex("^https://[^[:space:]'\"\\\\`$]+$", var.db_ca_bundle_url))
    error_message = "db_ca_bundle_url must be empty or an https:// URL without spaces, quotes, backslashes, backticks or dollar signs."
  }
}

variable "multi_az" {
  description = "Run the database with a synchronous standby in the second zone (automatic failover; doubles the database cost)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to delete the database and the load balancer until this is set to false and applied."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Delete the database without a final snapshot. Leave false outside throwaway environments."
  type        = bool
  default     = false
}

variable "backup_retention_days" {
  description = "Days of automated database backups (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35."
  }
}

variable "db_apply_immediately" {
  description = "Apply database changes at once instead of in the next maintenance window (may restart the database)."
  type        = bool
  default     = false
}

variable "performance_insights_enabled" {
  description = "Turn on RDS Performance Insights (7 days of history are free)."
  type        = bool
  default     = true
}

variable "enhanced_monitoring_interval" {
  description = "Seconds between RDS enhanced monitoring samples; 0 turns enhanced monitoring off."
  type        = number
  default     = 60

  validation {
    condition     = contains([0, 1, 5, 10, 15, 30, 60], var.enhanced_monitoring_interval)
    error_message = "enhanced_monitoring_interval must be one of 0, 1, 5, 10, 15, 30, 60."
  }
}

variable "iam_database_authentication_enabled" {
  description = "Allow IAM authentication tokens for database users granted rds_iam (the service itself uses the managed password)."
  type        = bool
  default     = true
}

variable "db_log_min_duration_ms" {
  description = "Log statements that run longer than this many milliseconds (-1 turns slow-query logging off)."
  type        = number
  default     = 1000

  validation {
    condition     = var.db_log_min_duration_ms >= -1
    error_message = "db_log_min_duration_ms must be -1 or more."
  }
}

# --- monitoring ---------------------------------------------------------------

variable "alarm_sns_topic_arn" {
  description = "SNS topic that receives alarm and recovery notifications. Empty: alarms are created without actions."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_sns_topic_arn == "" || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be empty or an SNS topic ARN."
  }
}

variable "alarm_5xx_threshold" {
  description = "Number of 5xx responses (from the load balancer or the targets) in 5 minutes that raises an alarm."
  type        = number
  default     = 10

  validation {
    condition     = var.alarm_5xx_threshold >= 1
    error_message = "alarm_5xx_threshold must be at least 1."
  }
}

variable "alarm_db_cpu_percent" {
  description = "Database CPU utilisation (average over 15 minutes) that raises an alarm."
  type        = number
  default     = 80

  validation {
    condition     = var.alarm_db_cpu_percent > 0 && var.alarm_db_cpu_percent <= 100
    error_message = "alarm_db_cpu_percent must be between 1 and 100."
  }
}

variable "alarm_db_free_storage_percent" {
  description = "Alarm when free database storage falls below this share of db_allocated_storage."
  type        = number
  default     = 10

  validation {
    condition     = var.alarm_db_free_storage_percent > 0 && var.alarm_db_free_storage_percent < 100
    error_message = "alarm_db_free_storage_percent must be between 1 and 99."
  }
}
