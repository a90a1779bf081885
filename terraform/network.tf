# Network: one VPC over two availability zones with three tiers of subnets.
#
#   public   - the load balancer and the NAT gateway(s); route to the internet gateway
#   app      - the instances; no public addresses, egress only through NAT
#   database - RDS; no route out of the VPC at all
#
# Instances need outbound HTTPS for SSM Session Manager, Secrets Manager and the
# release download from an arbitrary https URL, so the app tier gets NAT rather
# than a set of interface endpoints. A free S3 gateway endpoint keeps S3 traffic
# (package repositories, artifacts kept in S3) off the NAT gateway.

data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  # Pinned zones when given; otherwise the first two by name, which a zone added
  # to the region later does not change (new zones get later letters).
  azs = length(var.availability_zones) == 2 ? var.availability_zones : slice(sort(data.aws_availability_zones.available.names), 0, 2)

  # /16 VPC -> /20 subnets; a /24 VPC -> /28 subnets. Indexes: 0-1 public,
  # 2-3 app, 4-5 database.
  subnet_newbits = 4
  public_cidrs   = [for i in range(2) : cidrsubnet(var.vpc_cidr, local.subnet_newbits, i)]
  app_cidrs      = [for i in range(2) : cidrsubnet(var.vpc_cidr, local.subnet_newbits, i + 2)]
  database_cidrs = [for i in range(2) : cidrsubnet(var.vpc_cidr, local.subnet_newbits, i + 4)]

  nat_count = var.nat_gateway_per_az ? 2 : 1
}

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = "${local.name}-vpc" }

  lifecycle {
    precondition {
      condition     = length(var.availability_zones) == 2 || length(data.aws_availability_zones.available.names) >= 2
      error_message = "The region must offer at least two availability zones."
    }
  }
}

# The default security group of the VPC admits nothing; every resource uses its
# own group below.
resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.main.id

  tags = { Name = "${local.name}-default-deny" }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id

  tags = { Name = "${local.name}-igw" }
}

# --- public tier ----------------------------------------------------------------

resource "aws_subnet" "public" {
  count = 2

  vpc_id                  = aws_vpc.main.id
  availability_zone       = local.azs[count.index]
  cidr_block              = local.public_cidrs[count.index]
  map_public_ip_on_launch = false

  tags = { Name = "${local.name}-public-${local.azs[count.index]}", Tier = "public" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id

  tags = { Name = "${local.name}-public" }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.main.id
}

resource "aws_route_table_association" "public" {
  count = 2

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  count = local.nat_count

  domain = "vpc"

  tags = { Name = "${local.name}-nat-${local.azs[count.index]}" }

  depends_on = [aws_internet_gateway.main]
}

resource "aws_nat_gateway" "main" {
  count = local.nat_count

  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id

  tags = { Name = "${local.name}-nat-${local.azs[count.index]}" }

  depends_on = [aws_internet_gateway.main]
}

# --- app tier -------------------------------------------------------------------

resource "aws_subnet" "app" {
  count = 2

  vpc_id                  = aws_vpc.main.id
  availability_zone       = local.azs[count.index]
  cidr_block              = local.app_cidrs[count.index]
  map_public_ip_on_launch = false

  tags = { Name = "${local.name}-app-${local.azs[count.index]}", Tier = "app" }
}

# One route table per zone, so that per-zone NAT is a variable and not a rebuild.
resource "aws_route_table" "app" {
  count = 2

  vpc_id = aws_vpc.main.id

  tags = { Name = "${local.name}-app-${local.azs[count.index]}" }
}

resource "aws_route" "app_nat" {
  count = 2

  route_table_id         = aws_route_table.app[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.main[var.nat_gateway_per_az ? count.index : 0].id
}

resource "aws_route_table_association" "app" {
  count = 2

  subnet_id      = aws_subnet.app[count.index].id
  route_table_id = aws_route_table.app[count.index].id
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.app[*].id

  tags = { Name = "${local.name}-s3" }
}

# --- database tier --------------------------------------------------------------

resource "aws_subnet" "database" {
  count = 2

  vpc_id                  = aws_vpc.main.id
  availability_zone       = local.azs[count.index]
  cidr_block              = local.database_cidrs[count.index]
  map_public_ip_on_launch = false

  tags = { Name = "${local.name}-db-${local.azs[count.index]}", Tier = "database" }
}

# No routes besides the implicit local one: the database cannot reach, or be
# reached from, anything outside the VPC.
resource "aws_route_table" "database" {
  vpc_id = aws_vpc.main.id

  tags = { Name = "${local.name}-db" }
}

resource "aws_route_table_association" "database" {
  count = 2

  subnet_id      = aws_subnet.database[count.index].id
  route_table_id = aws_route_table.database.id
}

# --- flow logs ------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "flow_logs" {
  count = var.flow_logs_enabled ? 1 : 0

  name              = local.flow_logs_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_iam_role" "flow_logs" {
  count = var.flow_logs_enabled ? 1 : 0

  name_prefix = "${local.name}-flow-logs-"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "vpc-flow-logs.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id }
      }
    }]
  })
}

resource "aws_iam_role_policy" "flow_logs" {
  count = var.flow_logs_enabled ? 1 : 0

  name = "write-flow-logs"
  role = aws_iam_role.flow_logs[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect = "Allow"
      Action = [
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams",
      ]
      Resource = [
        aws_cloudwatch_log_group.flow_logs[0].arn,
        "${aws_cloudwatch_log_group.flow_logs[0].arn}:log-stream:*",
      ]
    }]
  })
}

resource "aws_flow_log" "main" {
  count = var.flow_logs_enabled ? 1 : 0

  vpc_id               = aws_vpc.main.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs[0].arn
  iam_role_arn         = aws_iam_role.flow_logs[0].arn

  tags = { Name = "${local.name}-vpc" }
}
