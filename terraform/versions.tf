terraform {
  # 1.9+ for validations that compare two variables, 1.7+ for mocked tests.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70.0, < 6.0.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(
      {
        Project     = var.name
        Environment = var.environment
        ManagedBy   = "terraform"
      },
      var.tags,
    )
  }
}

# Context used to build ARNs and policies without hard-coding the account,
# partition or region.
data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  # Every name this stack gives (load balancer, database, key alias, log groups, alarms,
  # and the prefixes of the rest) starts with name-environment, so that two environments
  # can live in one account and region without colliding. Tags carry both as well.
  name = "${var.name}-${var.environment}"
}
